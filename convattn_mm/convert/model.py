"""Whole-network conversion: replace selected convolutions in place."""
import fnmatch
import math
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch.nn as nn

from .conv import UnsupportedConvError, check_convertible, conv_to_attention

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class ConversionReport:
    """What :func:`convert_model` did.

    Attributes:
        converted: one dict per converted conv (``name``, ``kernel``,
            ``stride``, ``dilation``, ``groups``, ``in``, ``out``, ``heads``,
            ``seconds``).
        skipped: ``(name, reason)`` of every conv left as it was.
        seconds: total wall time.
    """
    converted: List[dict] = field(default_factory=list)
    skipped: List[tuple] = field(default_factory=list)
    seconds: float = 0.0

    def table(self):
        """A plain-text table: one row per conv, converted first."""
        head = ('module', 'kernel', 'stride', 'dil', 'groups', 'in', 'out',
                'heads', 'status')
        rows = [(c['name'], _fmt(c['kernel']), _fmt(c['stride']),
                 _fmt(c['dilation']), str(c['groups']), str(c['in']),
                 str(c['out']), str(c['heads']), 'converted')
                for c in self.converted]
        rows += [(n, '', '', '', '', '', '', '', 'skipped: ' + r)
                 for n, r in self.skipped]
        widths = [max(len(r[i]) for r in rows + [head])
                  for i in range(len(head))]
        line = '  '.join('{:<%d}' % w for w in widths)
        out = [line.format(*head), line.format(*('-' * w for w in widths))]
        out += [line.format(*r) for r in rows]
        out = [o.rstrip() for o in out]
        out.append(f'{len(self.converted)} converted, {len(self.skipped)} '
                   f'skipped in {self.seconds:.2f} s')
        return '\n'.join(out)

    def __str__(self):
        return self.table()


def _fmt(t):
    return 'x'.join(str(v) for v in t)


def _matcher(select):
    """``select`` -> ``(name, module) -> bool`` or None (default rule)."""
    if select is None:
        return None
    if callable(select):
        return select
    if isinstance(select, str):
        select = [select]
    if not isinstance(select, (list, tuple)) or not all(
            isinstance(p, str) for p in select):
        raise TypeError(f'select={select!r}: expected None, a name pattern '
                        f'(fnmatch, e.g. "backbone.layer*.conv2"), a list of '
                        f'patterns or a callable(name, module) -> bool')
    patterns = list(select)
    return lambda name, module: any(
        fnmatch.fnmatchcase(name, p) for p in patterns)


def convert_model(model: nn.Module,
                  select=None,
                  types=None,
                  init: str = 'exact',
                  strict: bool = False,
                  progress: Optional[Callable[[str], None]] = None,
                  **conv_args):
    """Replace convolutions of ``model`` by :class:`ConvAttention` layers,
    in place.

    Args:
        model: any ``nn.Module``.
        select: which convs to convert. None (default): every conv of
            ``types`` with a kernel larger than 1 that converts exactly
            (others are reported as skipped). A name pattern (``fnmatch`` on
            the qualified module name, e.g. ``'backbone.layer*.*.conv2'``),
            a list of patterns, or ``callable(name, module) -> bool``: only
            matching convs, 1x1 included.
        types: conv classes considered (a class or tuple); default
            ``(nn.Conv1d, nn.Conv2d, nn.Conv3d)`` and their subclasses.
        init: ``'exact'``, ``'quadratic'`` or ``'gated'``
            (:func:`conv_to_attention`).
        strict: raise when a *selected* conv cannot be converted (default:
            skip it and report why).
        progress: called with one line per conv as it is processed.
        **conv_args: passed to :func:`conv_to_attention`.

    Returns:
        ``(model, report)``: the same module object, and a
        :class:`ConversionReport`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f'model={type(model).__name__}: expected an '
                        f'nn.Module')
    if types is None:
        types = CONV_TYPES
    elif isinstance(types, type):
        types = (types, )
    if not isinstance(types, tuple) or not all(
            isinstance(t, type) and issubclass(t, nn.Module) for t in types):
        raise TypeError(f'types={types!r}: expected an nn.Module subclass or '
                        f'a tuple of them')
    match = _matcher(select)
    report = ConversionReport()
    start = time.perf_counter()
    candidates = [(n, m) for n, m in model.named_modules()
                  if isinstance(m, nn.modules.conv._ConvNd)]
    total = len(candidates)
    for i, (name, conv) in enumerate(candidates, 1):
        reason = None
        if not isinstance(conv, types):
            reason = f'type {type(conv).__name__} not in types'
        elif match is None:
            if math.prod(conv.kernel_size) == 1:
                reason = ('kernel 1 (the default converts kernels > 1; '
                          'select it by name to convert)')
        elif not match(name, conv):
            reason = 'not selected'
        if reason is None:
            try:
                check_convertible(conv)
            except UnsupportedConvError as e:
                if strict and match is not None:
                    raise UnsupportedConvError(f'{name}: {e}') from None
                reason = str(e)
        if reason is not None:
            report.skipped.append((name, reason))
            if progress:
                progress(f'[{i}/{total}] {name}: skipped ({reason})')
            continue
        t0 = time.perf_counter()
        layer = conv_to_attention(conv, init=init, **conv_args)
        _set_submodule(model, name, layer)
        report.converted.append(
            dict(name=name, kernel=tuple(conv.kernel_size),
                 stride=tuple(conv.stride), dilation=tuple(conv.dilation),
                 groups=conv.groups, **{'in': conv.in_channels},
                 out=conv.out_channels, heads=layer.num_heads,
                 seconds=time.perf_counter() - t0))
        if progress:
            progress(f'[{i}/{total}] {name}: converted '
                     f'{_fmt(conv.kernel_size)} conv -> {layer.num_heads} '
                     f'heads ({init})')
    report.seconds = time.perf_counter() - start
    return model, report


def _set_submodule(model, name, module):
    if name == '':
        raise ValueError('the model itself is a conv: call '
                         'conv_to_attention(model) instead')
    parent_name, _, child = name.rpartition('.')
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
