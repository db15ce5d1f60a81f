"""Neighbourhoods on the relative-offset axis: windows, border rules, tables.

Everything here is shape logic, independent of any tensor values, and is shared
by every backend (the brute-force reference re-derives windows on its own, so
that tests compare two independent constructions).

Per axis of length ``L`` a query at position ``i`` sees ``K`` keys ``i + δ``
(``δ`` a multiple of the dilation ``d``) chosen by the border rule:

* ``'shift'`` -- NATTEN's rule. Positions are split into ``d`` groups by
  ``i mod d``; inside its group a query sees ``K`` consecutive members, the
  window centred on it and moved inward at the borders, so that every query
  sees ``K`` in-map keys. ``δ/d ∈ [-(K-1), K-1]``. Needs ``K·d <= L``.
* ``'mask'`` -- the centred window ``δ/d ∈ [-(K-1)/2, (K-1)/2]``; keys
  outside the map are excluded (softmax over the rest).
* ``'zeros'`` -- the centred window over a zero-padded map: keys outside the
  map take part with zero key and zero value (what a zero-padded convolution
  sees). Needs ``(K-1)·d + 1 <= L`` (as ``'mask'``).

``kernel_size='global'`` (for all axes, or per axis) means every in-map key,
whatever the border rule and map size: internally it is ``'shift'`` with
``K = L`` and ``d = 1`` -- the same path as a ``'shift'`` window that equals
the map.

Relative position terms are read from a *table* over every offset a window can
produce: per axis ``2r+1`` entries with ``r = K-1`` (``'shift'``, global) or
``r = (K-1)/2`` (``'mask'``, ``'zeros'``); entry ``t`` holds ``δ = (t-r)·d``.
"""
import functools
import math
from dataclasses import dataclass
from typing import Sequence, Tuple, Union

import torch

from ..utils import check_choice

BORDERS = ('mask', 'shift', 'zeros')
GLOBAL = 'global'

# Markers in flat neighbour indices (``WindowSpec.neighbors``).
MASKED = -1  # key outside the map under 'mask': excluded from the softmax
ZERO = -2  # key outside the map under 'zeros': zero key, zero value


def to_tuple(value, rank: int, name: str, allow_global: bool = False):
    """Broadcast an int (or ``'global'``) to a ``rank``-tuple, and check it.

    Raises:
        TypeError / ValueError naming ``name``, its value and what is allowed.
    """
    allowed = 'a positive int' + (" or 'global'" if allow_global else '')
    if isinstance(value, (list, tuple)):
        if len(value) != rank:
            raise ValueError(f'{name}={value!r} has {len(value)} entries, '
                             f'expected {rank} (one per spatial axis) or '
                             f'{allowed}')
        items = tuple(value)
    else:
        items = (value, ) * rank
    for item in items:
        if allow_global and item == GLOBAL:
            continue
        if isinstance(item, bool) or not isinstance(item, int):
            raise TypeError(f'{name}={value!r}: each entry must be {allowed}')
        if item < 1:
            raise ValueError(f'{name}={value!r}: each entry must be {allowed}')
    return items


def table_radius(kernel: int, rule: str) -> int:
    """Table radius ``r`` (in dilation steps) of a ``kernel``-wide window
    under border ``rule``: ``K-1`` for ``'shift'`` (global axes too),
    ``(K-1)/2`` for the centred rules."""
    return kernel - 1 if rule == 'shift' else (kernel - 1) // 2


def window_extent(kernel: int, dilation: int, rule: str) -> int:
    """Smallest map size a window fits (the fit rule): ``K·d`` for
    ``'shift'`` (every query sees ``K`` in-map keys of its dilation group),
    ``(K-1)·d + 1`` for the centred rules."""
    return kernel * dilation if rule == 'shift' else (kernel -
                                                      1) * dilation + 1


@dataclass(frozen=True)
class AxisWindow:
    """The window along one axis (see the module docstring).

    Attributes:
        length: map size ``L`` along the axis.
        kernel: window size ``K`` (``L`` for a global axis).
        dilation: step ``d`` between window members.
        rule: ``'shift'``, ``'mask'`` or ``'zeros'`` (global axes: shift).
        stride: query stride ``s``: queries at ``0, s, 2s, ...``.
    """
    length: int
    kernel: int
    dilation: int
    rule: str
    stride: int = 1

    @property
    def radius(self) -> int:
        """Table radius ``r`` in units of the dilation."""
        return table_radius(self.kernel, self.rule)

    @property
    def table_size(self) -> int:
        return 2 * self.radius + 1

    @property
    def out_length(self) -> int:
        return -(-self.length // self.stride)

    def neighbors(self):
        """Per output query and window slot: key coordinate, validity, table
        index.

        Returns:
            key ``[Lq, K]`` long (undefined where invalid), valid ``[Lq, K]``
            bool, table ``[Lq, K]`` long in ``[0, 2r]``.
        """
        L, K, d = self.length, self.kernel, self.dilation
        i = torch.arange(0, L, self.stride)[:, None]
        t = torch.arange(K)[None, :]
        if self.rule == 'shift':
            group, j = i % d, i // d
            group_len = (L - group + d - 1) // d
            start = torch.minimum((j - K // 2).clamp(min=0), group_len - K)
            key = group + d * (start + t)
            table = start + t - j + (K - 1)
            valid = torch.ones_like(key, dtype=torch.bool)
        else:
            key = i + d * (t - (K - 1) // 2)
            table = t.expand_as(key)
            valid = (key >= 0) & (key < L)
        return key, valid, table


@dataclass(frozen=True)
class WindowSpec:
    """A neighbourhood over a ``rank``-D map: one :class:`AxisWindow` per
    axis plus the border rule for out-of-map keys."""
    axes: Tuple[AxisWindow, ...]
    border: str

    @property
    def rank(self) -> int:
        return len(self.axes)

    @property
    def in_shape(self) -> Tuple[int, ...]:
        return tuple(a.length for a in self.axes)

    @property
    def out_shape(self) -> Tuple[int, ...]:
        return tuple(a.out_length for a in self.axes)

    @property
    def table_shape(self) -> Tuple[int, ...]:
        return tuple(a.table_size for a in self.axes)

    @property
    def window_size(self) -> int:
        return math.prod(a.kernel for a in self.axes)

    @property
    def is_global(self) -> bool:
        return all(a.rule == 'shift' and a.kernel == a.length
                   for a in self.axes)

    @property
    def strided(self) -> bool:
        return any(a.stride > 1 for a in self.axes)

    def table_offsets(self) -> torch.Tensor:
        """The offset ``δ`` (pixels) of every table entry: ``[T, rank]`` long,
        row-major over :attr:`table_shape` (cached per window: do not modify
        it in place)."""
        return _table_offsets(self)

    def query_index(self, device=None) -> torch.Tensor:
        """Flat input index of every output query, ``[Nq]`` long."""
        return _query_index(self).to(device)

    def neighbors(self, device=None):
        """Flat neighbour and table indices of every output query.

        Returns:
            nbr ``[Nq, Kw]`` int32: flat key index, or :data:`MASKED` /
            :data:`ZERO` for out-of-map keys; table ``[Nq, Kw]`` int32: flat
            index into :attr:`table_shape`. ``Kw`` is :attr:`window_size`.
        """
        if device is None or torch.device(device).type == 'cpu':
            return _neighbors(self)
        return _neighbors_on(self, str(device))


@functools.lru_cache(maxsize=256)
def _query_index(spec: WindowSpec):
    coords = [torch.arange(0, a.length, a.stride) for a in spec.axes]
    flat = torch.zeros((), dtype=torch.long)
    for a, c in zip(spec.axes, coords):
        flat = flat[..., None] * a.length + c
    return flat.reshape(-1)


@functools.lru_cache(maxsize=256)
def _table_offsets(spec: WindowSpec):
    grids = [(torch.arange(a.table_size) - a.radius) * a.dilation
             for a in spec.axes]
    mesh = torch.meshgrid(*grids, indexing='ij')
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1)


@functools.lru_cache(maxsize=256)
def _neighbors(spec: WindowSpec):
    nbr = torch.zeros((), dtype=torch.long)
    table = torch.zeros((), dtype=torch.long)
    valid = torch.ones((), dtype=torch.bool)
    for a in spec.axes:
        key, ok, tab = a.neighbors()
        # outer combination: [..., Lq_a, ..., K_a]; queries first, slots last
        nbr = _outer(nbr, key, a.length, lambda x, y, n: x * n + y)
        table = _outer(table, tab, a.table_size, lambda x, y, n: x * n + y)
        valid = _outer(valid, ok, None, lambda x, y, n: x & y)
    nq, kw = math.prod(spec.out_shape), spec.window_size
    nbr, table, valid = (x.reshape(nq, kw) for x in (nbr, table, valid))
    marker = MASKED if spec.border == 'mask' else ZERO
    nbr = torch.where(valid, nbr, torch.full_like(nbr, marker))
    return nbr.to(torch.int32).contiguous(), table.to(torch.int32).contiguous()


@functools.lru_cache(maxsize=64)
def _neighbors_on(spec: WindowSpec, device: str):
    return tuple(x.to(device) for x in _neighbors(spec))


def _outer(acc, new, size, combine):
    """Combine ``acc [Q..., S...]`` with ``new [Lq, K]`` into
    ``[Q..., Lq, S..., K]``."""
    nq = acc.dim() // 2
    acc = acc.reshape(acc.shape[:nq] + (1, ) + acc.shape[nq:] + (1, ))
    shape = (1, ) * nq + (new.shape[0], ) + (1, ) * nq + (new.shape[1], )
    return combine(acc, new.reshape(shape), size)


def make_window(spatial: Sequence[int],
                kernel_size: Union[int, str, Sequence],
                dilation: Union[int, Sequence[int]] = 1,
                border: str = 'shift',
                query_stride: Union[int, Sequence[int]] = 1) -> WindowSpec:
    """Check the window arguments against a map and build its
    :class:`WindowSpec`.

    Args:
        spatial: map size per axis.
        kernel_size: odd int, per-axis tuple (entries may be ``'global'``) or
            ``'global'``.
        dilation: int or per-axis tuple (ignored on global axes).
        border: ``'shift'``, ``'mask'`` or ``'zeros'``.
        query_stride: int or per-axis tuple.

    Raises:
        ValueError / TypeError naming the argument, its value and the limit.
    """
    rank = len(spatial)
    check_choice(border, BORDERS, 'border')
    kernel = to_tuple(kernel_size, rank, 'kernel_size', allow_global=True)
    dil = to_tuple(dilation, rank, 'dilation')
    stride = to_tuple(query_stride, rank, 'query_stride')
    axes = []
    for ax, (L, K, d, s) in enumerate(zip(spatial, kernel, dil, stride)):
        if K == GLOBAL:
            axes.append(AxisWindow(L, L, 1, 'shift', s))
            continue
        if K % 2 == 0:
            raise ValueError(f'kernel_size={kernel_size!r}: window sizes must '
                             f'be odd (got {K} on axis {ax}); use an odd size '
                             f"or 'global'")
        if border == 'shift' and window_extent(K, d, border) > L:
            raise ValueError(
                f'kernel_size={kernel_size!r} with dilation={dilation!r} does '
                f'not fit the map {tuple(spatial)} on axis {ax}: the shift '
                f'border needs kernel_size * dilation <= size '
                f'({K} * {d} > {L})')
        if border != 'shift' and window_extent(K, d, border) > L:
            raise ValueError(
                f'kernel_size={kernel_size!r} with dilation={dilation!r} does '
                f'not fit the map {tuple(spatial)} on axis {ax}: border='
                f'{border!r} needs (kernel_size - 1) * dilation + 1 <= size '
                f'({(K - 1) * d + 1} > {L})')
        axes.append(AxisWindow(L, K, d, border, s))
    return WindowSpec(tuple(axes), border)
