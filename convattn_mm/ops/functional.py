"""Functional neighbourhood attention with relative position terms.

Layout (NATTEN's, heads last): query/key ``[B, *spatial, heads, head_dim]``,
value ``[B, *spatial, heads, v_dim]``; output ``[B, *out_spatial, heads,
v_dim]`` with ``out_spatial = ceil(spatial / query_stride)``. For head ``h``
and output query ``q`` the op computes::

    s_δ = scale · qᵀ(k_{q+δ} + r_δ) + b_δ,   δ ∈ N(q)
    out = Σ_δ softmax_δ(s)_δ · v_{q+δ}

with the neighbourhood ``N(q)`` given by ``kernel_size``, ``dilation`` and the
``border`` rule (see :mod:`convattn_mm.ops.windows`), ``b`` an optional bias
table ``pos_bias [heads, *table_shape]`` and ``r`` optional relative keys
``rel_keys [heads, *table_shape, head_dim]``. ``table_shape`` and the offset
of each entry come from :func:`window_table`. The u/v terms of
Transformer-XL fold into these two: ``(q+u)ᵀk`` is a shifted query, ``vᵀr_δ``
a bias table.

Backends (``backend=``):

============ ======================================= ===========================
name         what it does                            can carry
============ ======================================= ===========================
reference    dense ``N x N`` scores, window mask     everything (tests only)
gather       gathers ``Kw`` keys per query (torch)   everything, any device
fused_cpu    C++ kernel, fwd + bwd                   everything, CPU
natten       NATTEN ``na{1,2,3}d``                   shift border, no bias, no
                                                     rel keys, no query stride;
                                                     training on GPU only
flex         ``flex_attention`` score/mask mods      everything; training on GPU
                                                     only
============ ======================================= ===========================

``'auto'`` takes the first that can run the call: on CUDA ``natten``, ``flex``,
``gather``; on the CPU ``fused_cpu``, ``gather``. A forced backend that cannot
run the call raises ``NotImplementedError`` naming the missing feature.
"""
import math
from typing import Optional

import torch

from ..utils import check_choice
from . import flex as _flex
from . import fused_cpu as _fused
from . import natten_backend as _natten
from .gather import gather_attention
from .reference import reference_attention
from .windows import WindowSpec, make_window


class _Backend:

    def __init__(self, name, fn, check):
        self.name, self.fn, self.check = name, fn, check


def _no_dropout(name, check):

    def wrapped(spec, req):
        if req.get('dropout'):
            return f'attention dropout: {name} has none (gather has)'
        return check(spec, req)

    return wrapped


def _check_natten(spec, req):
    if not _natten.available():
        return 'natten is not installed (pip install natten)'
    if any(a.rule != 'shift' for a in spec.axes):
        return (f"border={spec.border!r}: NATTEN only has the 'shift' border")
    if req['pos_bias']:
        return 'pos_bias: NATTEN (>= 0.20) has no position bias'
    if req['rel_keys']:
        return 'rel_keys: NATTEN has no relative keys'
    if spec.strided:
        return 'query_stride > 1: NATTEN has no query stride'
    if req['dtype'] == torch.float64:
        return 'dtype float64: NATTEN takes float32/float16/bfloat16'
    if req['training'] and req['device'] != 'cuda':
        return ('backward on the CPU: NATTEN trains on CUDA only (its CPU '
                'path is forward-only flex attention)')
    return None


def _check_flex(spec, req):
    if not _flex.available():
        return 'torch.nn.attention.flex_attention is not available'
    if req['training'] and req['device'] != 'cuda':
        return ('backward on the CPU: FlexAttention does not support '
                'backward on CPU')
    return None


def _check_fused(spec, req):
    if req['device'] != 'cpu':
        return f"device {req['device']!r}: fused_cpu runs on the CPU only"
    reason = _fused.unavailable_reason()
    if reason:
        return f'the C++ kernel is unavailable: {reason}'
    return None


BACKENDS = {
    'reference': _Backend('reference', reference_attention, lambda s, r: None),
    'gather': _Backend('gather', gather_attention, lambda s, r: None),
    'fused_cpu': _Backend('fused_cpu', _fused.fused_cpu_attention,
                          _no_dropout('fused_cpu', _check_fused)),
    'natten': _Backend('natten', _natten.natten_attention,
                       _no_dropout('natten', _check_natten)),
    'flex': _Backend('flex', _flex.flex_attention_op,
                     _no_dropout('flex', _check_flex)),
}
AUTO_ORDER = {
    'cuda': ('natten', 'flex', 'gather'),
    'cpu': ('fused_cpu', 'gather'),
}


def _request(q, pos_bias, rel_keys, tensors, dropout_p=0.0):
    return dict(
        dropout=dropout_p > 0,
        device=q.device.type,
        dtype=q.dtype,
        training=torch.is_grad_enabled()
        and any(t is not None and t.requires_grad for t in tensors),
        pos_bias=pos_bias is not None,
        rel_keys=rel_keys is not None)


def check_backend(backend: str) -> str:
    """``backend`` if it names a backend or is ``'auto'``, else ValueError."""
    return check_choice(backend, BACKENDS, 'backend', extra=('auto', ))


def backend_support(spec: WindowSpec, request: dict):
    """Probe: ``{backend name: None if it can run, else the reason}``."""
    return {name: b.check(spec, request) for name, b in BACKENDS.items()}


def select_backend(backend: str, spec: WindowSpec, request: dict) -> str:
    """Resolve ``backend`` (a name or ``'auto'``) for a call, or raise."""
    if backend == 'auto':
        order = AUTO_ORDER.get(request['device'], ('gather', ))
        for name in order:
            if BACKENDS[name].check(spec, request) is None:
                return name
        return 'gather'
    check_backend(backend)
    reason = BACKENDS[backend].check(spec, request)
    if reason is not None:
        raise NotImplementedError(
            f'backend={backend!r} cannot run this call: {reason}. Use '
            f"backend='auto' or see convattn_mm.ops.backend_support().")
    return backend


def attention_bhnd(q, k, v, spec: WindowSpec, scale: float,
                   pos_bias: Optional[torch.Tensor] = None,
                   rel_keys: Optional[torch.Tensor] = None,
                   backend: str = 'auto',
                   dropout_p: float = 0.0) -> torch.Tensor:
    """The op in the ``[B, H, N, D]`` layout with flat tables (no checks on
    the tensors; layers call this after building ``spec`` themselves).

    Args:
        q, k: ``[B, H, N, D]``; v: ``[B, H, N, Dv]``; N = prod(spec.in_shape).
        pos_bias: ``[H, T]``; rel_keys: ``[H, T, D]``; T = prod(table_shape).
        dropout_p: dropout on the attention weights (reference and gather
            only; ``'auto'`` picks gather when it is > 0).

    Returns:
        ``[B, H, Nq, Dv]``, Nq = prod(spec.out_shape).
    """
    request = _request(q, pos_bias, rel_keys, (q, k, v, pos_bias, rel_keys),
                       dropout_p)
    name = select_backend(backend, spec, request)
    if dropout_p > 0:
        return BACKENDS[name].fn(q, k, v, spec, scale, pos_bias, rel_keys,
                                 dropout_p=dropout_p)
    return BACKENDS[name].fn(q, k, v, spec, scale, pos_bias, rel_keys)


def window_table(spatial, kernel_size, dilation=1, border='shift'):
    """Table shape and the offset of each entry for a window on a map.

    Returns:
        ``(table_shape, offsets)``: ``offsets [prod(table_shape), rank]``
        long, the δ (pixels) of each entry, row-major.
    """
    spec = make_window(tuple(spatial), kernel_size, dilation, border)
    return spec.table_shape, spec.table_offsets().clone()


def neighborhood_attention(query, key, value, kernel_size, dilation=1,
                           border='shift', query_stride=1, pos_bias=None,
                           rel_keys=None, scale=None, backend='auto'):
    """Multi-head neighbourhood attention with relative position terms.

    Args:
        query, key: ``[B, *spatial, heads, head_dim]`` (rank 1, 2 or 3).
        value: ``[B, *spatial, heads, v_dim]``.
        kernel_size: odd int, per-axis tuple, or ``'global'`` (every key);
            ints broadcast to all axes. ``kernel_size * dilation`` must fit
            the map (see :func:`~convattn_mm.ops.windows.make_window`).
        dilation: int or per-axis tuple.
        border: ``'shift'`` (NATTEN), ``'mask'`` or ``'zeros'``.
        query_stride: int or per-axis tuple: evaluate every s-th query.
        pos_bias: ``[heads, *table_shape]`` additive score per offset.
        rel_keys: ``[heads, *table_shape, head_dim]`` relative keys ``r_δ``.
        scale: softmax scale, default ``head_dim ** -0.5``.
        backend: ``'auto'`` or a name in :data:`BACKENDS`.

    Returns:
        ``[B, *out_spatial, heads, v_dim]``.

    Example:
        >>> q = torch.randn(2, 14, 14, 3, 32)
        >>> neighborhood_attention(q, q, q, kernel_size=7).shape
        torch.Size([2, 14, 14, 3, 32])
    """
    rank = _check_tensors(query, key, value)
    return _na(rank, query, key, value, kernel_size, dilation, border,
               query_stride, pos_bias, rel_keys, scale, backend)


def _check_tensors(query, key, value, rank=None):
    for name, t in (('query', query), ('key', key), ('value', value)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f'{name} must be a torch.Tensor, got '
                            f'{type(t).__name__}')
    if rank is None:
        rank = query.dim() - 3
        if rank not in (1, 2, 3):
            raise ValueError(
                f'query.shape={tuple(query.shape)}: expected [B, *spatial, '
                f'heads, head_dim] with 1, 2 or 3 spatial axes')
    elif query.dim() != rank + 3:
        raise ValueError(
            f'query.shape={tuple(query.shape)}: na{rank}d expects a '
            f'{rank + 3}-D tensor [B, {", ".join("XYZ"[:rank])}, heads, '
            f'head_dim]')
    if key.shape != query.shape:
        raise ValueError(f'key.shape={tuple(key.shape)} must equal '
                         f'query.shape={tuple(query.shape)}')
    if value.shape[:-1] != query.shape[:-1]:
        raise ValueError(
            f'value.shape={tuple(value.shape)} must match query.shape='
            f'{tuple(query.shape)} in all but the last (v_dim) axis')
    for name, t in (('key', key), ('value', value)):
        if t.dtype != query.dtype or t.device != query.device:
            raise ValueError(
                f'{name} is {t.dtype} on {t.device}, query is {query.dtype} '
                f'on {query.device}: they must agree')
    if not query.is_floating_point():
        raise TypeError(f'query.dtype={query.dtype}: expected a floating '
                        f'point tensor')
    return rank


def _na(rank, query, key, value, kernel_size, dilation, border, query_stride,
        pos_bias, rel_keys, scale, backend):
    spatial = tuple(query.shape[1:1 + rank])
    B, H, D = query.shape[0], query.shape[-2], query.shape[-1]
    spec = make_window(spatial, kernel_size, dilation, border, query_stride)
    check_backend(backend)
    tshape = spec.table_shape
    if pos_bias is not None and tuple(pos_bias.shape) != (H, *tshape):
        raise ValueError(
            f'pos_bias.shape={tuple(pos_bias.shape)}: expected '
            f'[heads, *table_shape] = {(H, *tshape)} for this window')
    if rel_keys is not None and tuple(rel_keys.shape) != (H, *tshape, D):
        raise ValueError(
            f'rel_keys.shape={tuple(rel_keys.shape)}: expected '
            f'[heads, *table_shape, head_dim] = {(H, *tshape, D)}')
    scale = D**-0.5 if scale is None else scale

    def to_bhnd(x):
        return x.reshape(B, math.prod(spatial), H, x.shape[-1]).transpose(
            1, 2)

    T = math.prod(tshape)
    out = attention_bhnd(
        to_bhnd(query), to_bhnd(key), to_bhnd(value), spec, scale,
        None if pos_bias is None else pos_bias.reshape(H, T),
        None if rel_keys is None else rel_keys.reshape(H, T, D), backend)
    return out.transpose(1, 2).reshape(B, *spec.out_shape, H,
                                       out.shape[-1])


def _per_rank(rank):

    def fn(query, key, value, kernel_size, dilation=1, border='shift',
           query_stride=1, pos_bias=None, rel_keys=None, scale=None,
           backend='auto'):
        _check_tensors(query, key, value, rank)
        return _na(rank, query, key, value, kernel_size, dilation, border,
                   query_stride, pos_bias, rel_keys, scale, backend)

    fn.__name__ = fn.__qualname__ = f'na{rank}d'
    fn.__doc__ = (f'{rank}-D :func:`neighborhood_attention`: tensors '
                  f'``[B, {", ".join("XYZ"[:rank])}, heads, head_dim]``; '
                  f'a tensor of another rank is an error.')
    return fn


na1d, na2d, na3d = _per_rank(1), _per_rank(2), _per_rank(3)
