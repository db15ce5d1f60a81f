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
natten       NATTEN ``na{1,2,3}d``                   shift border, no bias
                                                     (quadratic: extra dims),
                                                     no rel keys, no stride
flex         compiled ``flex_attention``, tiled      everything; training on
             block mask (:mod:`.flex`)               CUDA only
============ ======================================= ===========================

One decision per call: :func:`plan_attention` takes what the caller carries
(a :class:`PositionCarry`) and returns an :class:`AttentionPlan`: the
backend and how each term travels. ``'auto'`` takes the first that can run
the call: on CUDA ``natten`` (with libnatten only), ``flex``, ``gather``; on
the CPU ``fused_cpu``, ``gather``; all of them linear in tokens for a window.
A forced backend that cannot run the call raises ``NotImplementedError``
naming the missing feature; :func:`backend_support` reports every refusal.
"""
import math
from dataclasses import dataclass
from typing import Optional, Union

import torch

from ..utils import check_choice
from . import flex as _flex
from . import fused_cpu as _fused
from . import natten_backend as _natten
from .gather import gather_attention
from .reference import reference_attention
from .windows import WindowSpec, make_window


@dataclass(frozen=True)
class PositionCarry:
    """How a position encoding's terms travel to the op (each encoding
    declares one; see :mod:`convattn_mm.models.encodings`).

    Attributes:
        bias: a score ``b_δ`` per head and table offset (``pos_bias``).
        rel_keys: relative keys ``r_δ`` (``rel_keys``).
        extra_dims: the bias may instead travel as extra q/k head dims (the
            quadratic encoding): used only for a kernel with no bias input,
            and only where exact (:func:`extra_dims_refusal`).
        rotation: q and k are changed before the op (RoPE rotations, the
            Transformer-XL ``u`` shift); any backend carries that.
    Nothing set: no position term.
    """
    bias: bool = False
    rel_keys: bool = False
    extra_dims: bool = False
    rotation: bool = False


@dataclass(frozen=True)
class AttentionPlan:
    """The op's one decision for a call: the backend, and how each term
    travels.

    Attributes:
        backend: a name in :data:`BACKENDS`.
        bias_as: ``'bias'`` (``pos_bias``), ``'extra_dims'`` (appended to q
            and k by the encoding) or None (no bias term).
        rel_keys: relative keys travel as ``rel_keys``.
        rotation: q/k are rotated or shifted before the op.
        detail: what exactly runs (e.g. which NATTEN path, compiled flex).
    """
    backend: str
    bias_as: Optional[str] = None
    rel_keys: bool = False
    rotation: bool = False
    detail: str = ''


class _Backend:

    def __init__(self, name, fn, check, detail=lambda req: ''):
        self.name, self.fn, self.check, self.detail = name, fn, check, detail


def extra_dims_refusal(spec: WindowSpec, dtype) -> Optional[str]:
    """None where a bias carried as extra q/k dims gives the bias path's
    result, else the reason (the quadratic identity needs every padded key
    masked out, and its cancellation needs float32 or wider)."""
    if any(a.rule == 'zeros' for a in spec.axes):
        return ("border='zeros': a zero-padded key loses its -α‖k‖² entry, "
                'so extra dims are not exact there (carried as a bias)')
    if dtype not in (torch.float32, torch.float64):
        return (f'dtype {dtype}: the extra dims cancel large terms, exact '
                f'only in float32/float64 (carried as a bias)')
    return None


def _bias_carriage(spec, req, takes_bias):
    """``('bias' | 'extra_dims' | None, reason)`` for a backend that does
    (``takes_bias``) or does not take a bias input."""
    carry = req['carry']
    if not carry.bias:
        return None, None
    if takes_bias:
        return 'bias', None
    if not carry.extra_dims:
        return None, 'a position bias: this backend has no bias input'
    reason = extra_dims_refusal(spec, req['dtype'])
    if reason:
        return None, f'a position bias as extra head dims: {reason}'
    return 'extra_dims', None


def _no_dropout(name, check):

    def wrapped(spec, req):
        if req.get('dropout'):
            return f'attention dropout: {name} has none (gather has)'
        return check(spec, req)

    return wrapped


def _check_natten(spec, req):
    if not _natten.available():
        return 'natten is not installed (pip install natten)'
    if req['device'] == 'cuda' and not _natten.has_libnatten():
        return ('natten.HAS_LIBNATTEN is False: without its CUDA kernels '
                'NATTEN runs its own flex path (see docs/gpu.md)')
    if any(a.rule != 'shift' for a in spec.axes):
        return (f"border={spec.border!r}: NATTEN only has the 'shift' border")
    if req['carry'].rel_keys:
        return 'rel_keys: NATTEN has no relative keys'
    reason = _bias_carriage(spec, req, takes_bias=False)[1]
    if reason:
        return f'pos_bias: NATTEN (>= 0.20) has no position bias; {reason}'
    if spec.strided:
        return 'query_stride > 1: NATTEN has no query stride'
    if any(a.kernel < 2 for a in spec.axes):
        return 'a window 1 wide on an axis: NATTEN takes kernel_size >= 2'
    if req['dtype'] == torch.float64:
        return 'dtype float64: NATTEN takes float32/float16/bfloat16'
    if req['training'] and req['device'] != 'cuda':
        return ('backward on the CPU: NATTEN trains on CUDA only (its CPU '
                'path is forward-only flex attention)')
    return None


def _check_flex(spec, req):
    reason = _flex.unavailable_reason(req['device'])
    if reason:
        return reason
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
    'reference': _Backend('reference', reference_attention, lambda s, r: None,
                          lambda r: 'dense N x N scores (tests only)'),
    'gather': _Backend('gather', gather_attention, lambda s, r: None,
                       lambda r: 'plain PyTorch, K^d keys gathered per query'),
    'fused_cpu': _Backend('fused_cpu', _fused.fused_cpu_attention,
                          _no_dropout('fused_cpu', _check_fused),
                          lambda r: 'C++ kernel'),
    'natten': _Backend('natten', _natten.natten_attention,
                       _no_dropout('natten', _check_natten),
                       lambda r: _natten.path(r['device'])),
    'flex': _Backend('flex', _flex.flex_attention_op,
                     _no_dropout('flex', _check_flex),
                     lambda r: 'torch.compile(flex_attention), tiled block '
                     'mask'),
}
#: what ``'auto'`` tries, in order. Every entry grows linearly with tokens
#: for a window: flex always runs compiled, natten only with libnatten on
#: CUDA (its own flex fallback would run eagerly).
AUTO_ORDER = {
    'cuda': ('natten', 'flex', 'gather'),
    'cpu': ('fused_cpu', 'gather'),
}


def attention_request(q, carry: PositionCarry, tensors=(), dropout_p=0.0):
    """Describe a call for planning: device, dtype (the autocast dtype where
    autocast is on), whether it trains, dropout and the carried terms."""
    dtype = q.dtype
    if torch.is_autocast_enabled(q.device.type) and dtype == torch.float32:
        dtype = torch.get_autocast_dtype(q.device.type)
    return dict(
        dropout=dropout_p > 0,
        device=q.device.type,
        dtype=dtype,
        training=torch.is_grad_enabled()
        and any(t is not None and t.requires_grad for t in (q, *tensors)),
        carry=carry)


def _request(q, pos_bias, rel_keys, tensors, dropout_p=0.0):
    carry = PositionCarry(bias=pos_bias is not None,
                          rel_keys=rel_keys is not None)
    return attention_request(q, carry, tensors, dropout_p)


def check_backend(backend: str) -> str:
    """``backend`` if it names a backend or is ``'auto'``, else ValueError."""
    return check_choice(backend, BACKENDS, 'backend', extra=('auto', ))


def _plan_for(name, spec, req):
    carry = req['carry']
    bias_as = _bias_carriage(spec, req, takes_bias=name != 'natten')[0]
    return AttentionPlan(name, bias_as, carry.rel_keys, carry.rotation,
                         BACKENDS[name].detail(req))


@dataclass
class BackendSupport:
    """What :func:`backend_support` reports.

    Attributes:
        plan: the :class:`AttentionPlan` ``backend`` resolves to, or None
            when a forced backend cannot run the call.
        reasons: ``{backend name: None if it can run the call, else why
            not}`` for every backend.
        natten_path: which NATTEN implementation would run on this device
            (its CUDA kernels from libnatten, or its own flex path).
    """
    plan: Optional[AttentionPlan]
    reasons: dict
    natten_path: str

    def __str__(self):
        lines = [f'plan: {self.plan}', f'natten: {self.natten_path}']
        lines += [f'  {n:<10} {r or "can run"}' for n, r in
                  self.reasons.items()]
        return '\n'.join(lines)


def backend_support(spec: WindowSpec, request: dict,
                    backend: str = 'auto') -> BackendSupport:
    """Probe every backend for a call (``request`` as from
    :func:`attention_request`; a dict with ``pos_bias`` / ``rel_keys``
    booleans instead of ``carry`` is accepted too)."""
    request = _normalise(request)
    reasons = {name: b.check(spec, request) for name, b in BACKENDS.items()}
    try:
        plan = plan_attention(backend, spec, request)
    except NotImplementedError:
        plan = None
    return BackendSupport(plan, reasons, _natten.path(request['device']))


def _normalise(request):
    if 'carry' in request:
        return request
    out = dict(request)
    out['carry'] = PositionCarry(bias=bool(out.pop('pos_bias', False)),
                                 rel_keys=bool(out.pop('rel_keys', False)))
    out.setdefault('dropout', False)
    return out


def plan_attention(backend: str, spec: WindowSpec,
                   request: dict) -> AttentionPlan:
    """The one backend decision: resolve ``backend`` (a name or ``'auto'``)
    for a call and say how each position term travels, or raise
    ``NotImplementedError`` naming what a forced backend lacks."""
    request = _normalise(request)
    if backend == 'auto':
        order = AUTO_ORDER.get(request['device'], ('gather', ))
        for name in order:
            if BACKENDS[name].check(spec, request) is None:
                return _plan_for(name, spec, request)
        return _plan_for('gather', spec, request)
    check_backend(backend)
    reason = BACKENDS[backend].check(spec, request)
    if reason is not None:
        raise NotImplementedError(
            f'backend={backend!r} cannot run this call: {reason}. Use '
            f"backend='auto' or see convattn_mm.ops.backend_support().")
    return _plan_for(backend, spec, request)


def select_backend(backend: str, spec: WindowSpec, request: dict) -> str:
    """The backend name of :func:`plan_attention`."""
    return plan_attention(backend, spec, request).backend


def attention_bhnd(q, k, v, spec: WindowSpec, scale: float,
                   pos_bias: Optional[torch.Tensor] = None,
                   rel_keys: Optional[torch.Tensor] = None,
                   backend: Union[str, AttentionPlan] = 'auto',
                   dropout_p: float = 0.0) -> torch.Tensor:
    """The op in the ``[B, H, N, D]`` layout with flat tables (no checks on
    the tensors; layers call this after building ``spec`` themselves).

    Args:
        q, k: ``[B, H, N, D]``; v: ``[B, H, N, Dv]``; N = prod(spec.in_shape).
        pos_bias: ``[H, T]``; rel_keys: ``[H, T, D]``; T = prod(table_shape).
        backend: a name, ``'auto'``, or an :class:`AttentionPlan` already
            made for this call (then nothing is decided again).
        dropout_p: dropout on the attention weights (reference and gather
            only; ``'auto'`` picks gather when it is > 0).

    Returns:
        ``[B, H, Nq, Dv]``, Nq = prod(spec.out_shape).
    """
    if isinstance(backend, AttentionPlan):
        name = backend.backend
    else:
        request = _request(q, pos_bias, rel_keys,
                           (k, v, pos_bias, rel_keys), dropout_p)
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

    N = math.prod(spatial)  # not -1: a 0-sized batch leaves it ambiguous

    def to_bhnd(x):
        return x.reshape(B, N, H, x.shape[-1]).transpose(1, 2)

    T = math.prod(tshape)
    out = attention_bhnd(
        to_bhnd(query), to_bhnd(key), to_bhnd(value), spec, scale,
        None if pos_bias is None else pos_bias.reshape(H, T),
        None if rel_keys is None else rel_keys.reshape(H, T, D), backend)
    return out.transpose(1, 2).reshape(B, *spec.out_shape, H,
                                       value.shape[-1])


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
