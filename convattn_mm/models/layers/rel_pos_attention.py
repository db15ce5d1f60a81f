"""``RelPosAttention``: the one relative-δ attention layer.

For a map ``x [B, *spatial, C]`` (rank 1, 2 or 3) and each head ``h``::

    q, k, v = x W_q^h, x W_k^h, x W_v^h
    s_{q,δ} = scale · qᵀ(k_{q+δ} + r_δ) + b_δ          δ ∈ N(q)
    y_q = W_o [ Σ_δ softmax_δ(s)·v_{q+δ} ]_h

``N(q)`` is the window (``kernel_size``, ``dilation``, ``border``; see
:mod:`convattn_mm.ops.windows`), evaluated every ``query_stride`` positions;
``r`` and ``b`` come from the position encoding (``pos_encoding``). With
``kernel_size=3`` and a position-only encoding this is a convolution's
receptive field; with ``kernel_size='global'`` it is global attention.
"""
import contextlib
import dataclasses
import math

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from convattn_mm.models.encodings import RelPosEncoding
from convattn_mm.ops import (BORDERS, GLOBAL, PositionCarry, attention_bhnd,
                             attention_request, check_backend, fused_cpu,
                             make_window, plan_attention, to_tuple)
from convattn_mm.ops.windows import (check_odd_kernel, table_radius,
                                     window_extent)
from convattn_mm.ops.gather import attention_weights
from convattn_mm.ops.key_padding import padded_attention_bhnd
from convattn_mm.registry import MODELS, build_module
from convattn_mm.utils import (check_choice, check_positive_int,
                               resolve_head_dims)

SMALL_MAP_RULES = ('error', 'pad', 'shrink')
#: learned tables of a global window cover offsets up to this many pixels
#: per axis (larger offsets are clamped to the edge, Shaw et al.), so the
#: parameter count does not grow with the map
GLOBAL_TABLE_RADIUS = 15


@MODELS.register_module()
class RelPosAttention(BaseModule):
    """Multi-head neighbourhood attention with relative position terms.

    Args:
        embed_dims (int): input channels ``C``.
        num_heads (int): heads.
        head_dims (int, optional): query/key/value dims per head; default
            ``embed_dims // num_heads`` (then ``embed_dims`` must divide).
        out_dims (int, optional): output channels; default ``embed_dims``.
        kernel_size (int | tuple | str): odd window per axis, or
            ``'global'`` (per axis too). Default 7.
        dilation (int | tuple): window dilation. Default 1.
        query_stride (int | tuple): evaluate every s-th query (a strided
            convolution's output size ``ceil(L / s)``). Default 1.
        border (str): ``'shift'``, ``'mask'`` or ``'zeros'``.
        pos_encoding (dict, optional): config of a registered encoding
            (``RelativeBiasTable``, ``QuadraticEncoding``, ``RelativeKeys``,
            ``RoPE``, ``LogCPB``); the layer fills ``num_heads``,
            ``head_dims``, ``rank``, ``radius`` and ``step``.
        qkv_bias (bool): bias of the q/k/v projection.
        attn_drop (float): dropout on attention weights (runs the gather
            path in training). proj_drop (float): dropout after ``W_o``.
        backend (str): ``'auto'`` or an op backend name.
        small_map (str): a map smaller than the window along an axis:
            ``'shrink'`` -- attend globally along that axis (window = axis,
            position terms clamped to the table), ``'pad'`` -- zero-pad keys
            and values up to the window (exact for ``border='zeros'``, which
            it requires), ``'error'``.
        rank (int): spatial rank, 1-3. Default 2.
        causal (bool): rank 1 only (time): query ``t`` sees only keys
            ``t + δ`` with ``δ <= 0``, the ``kernel_size`` frames
            ``t, t-d, ..., t-(K-1)d`` (NATTEN's ``is_causal``). Run as the
            centred window of ``2K-1`` frames with ``-inf`` added to the
            scores of the future offsets ``δ > 0`` -- every backend that
            carries a bias runs it, at about twice the attention-core work
            of a ``K``-frame window (projections unchanged). Needs
            ``border='mask'`` or ``'zeros'``; ``small_map='pad'`` is then
            exact for ``'mask'`` too (the padding lies in the future).

    Shapes:
        ``forward``: ``[B, *spatial, C] -> [B, *out_spatial, out_dims]``;
        ``forward_nchw``: ``[B, C, *spatial] -> [B, out_dims, *out_spatial]``.

    Example:
        >>> layer = RelPosAttention(64, 4, kernel_size=5,
        ...     pos_encoding=dict(type='RelativeBiasTable'))
        >>> layer(torch.randn(2, 9, 9, 64)).shape
        torch.Size([2, 9, 9, 64])
    """

    def __init__(self,
                 embed_dims,
                 num_heads,
                 head_dims=None,
                 out_dims=None,
                 kernel_size=7,
                 dilation=1,
                 query_stride=1,
                 border='shift',
                 pos_encoding=None,
                 qkv_bias=True,
                 attn_drop=0.0,
                 proj_drop=0.0,
                 backend='auto',
                 small_map='shrink',
                 rank=2,
                 causal=False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        check_choice(rank, (1, 2, 3), 'rank')
        if causal and rank != 1:
            raise NotImplementedError(
                f'causal=True with rank={rank}: causal windows exist on one '
                f'(time) axis only; use rank=1')
        if causal and border == 'shift':
            raise ValueError("causal=True needs border='mask' or 'zeros' "
                             "(a 'shift' window moves into the future at the "
                             "start of the sequence), got border='shift'")
        head_dims = resolve_head_dims(embed_dims, num_heads, head_dims)
        if out_dims is not None:
            check_positive_int(out_dims, 'out_dims')
        check_choice(border, BORDERS, 'border')
        check_backend(backend)
        check_choice(small_map, SMALL_MAP_RULES, 'small_map')
        if small_map == 'pad' and border != 'zeros' and not causal:
            raise ValueError(f"small_map='pad' is exact only for "
                             f"border='zeros', got border={border!r} "
                             f"(causal=True layers also allow it)")
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.head_dims = head_dims
        self.out_dims = out_dims or embed_dims
        self.rank, self.causal = rank, causal
        if causal:  # even K is fine: the window holds the K causal frames
            self.kernel_size = to_tuple(kernel_size, rank, 'kernel_size',
                                        allow_global=True)
            self.kernel_size = tuple(k if k == GLOBAL else 2 * k - 1
                                     for k in self.kernel_size)
        else:
            self.kernel_size = check_odd_kernel(kernel_size, rank)
        self.dilation = to_tuple(dilation, rank, 'dilation')
        self.query_stride = to_tuple(query_stride, rank, 'query_stride')
        self.border, self.backend, self.small_map = border, backend, small_map
        self.scale = head_dims**-0.5
        inner = num_heads * head_dims
        self.qkv = nn.Linear(embed_dims, 3 * inner, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(inner, self.out_dims)
        self.proj_drop = nn.Dropout(proj_drop)
        self.pos_encoding = None
        if pos_encoding is not None:
            cfg = dict(pos_encoding)
            radius, step = self._table_geometry(cfg.pop('radius', None))
            extra = dict(num_heads=num_heads, head_dims=head_dims, rank=rank,
                         radius=radius, step=step)
            kind = cfg.get('type')
            cls = MODELS.get(kind) if isinstance(kind, str) else kind
            if getattr(cls, 'takes_scale', False):
                extra['scale'] = self.scale
            self.pos_encoding = build_module(cfg, **extra)
        self._recorder = None

    def _table_geometry(self, radius=None):
        """Nominal table radius (steps) and step (px) per axis."""
        if radius is not None:
            radius = to_tuple(radius, self.rank, 'pos_encoding.radius')
        out_r, out_s = [], []
        for a, (k, d) in enumerate(zip(self.kernel_size, self.dilation)):
            if k == GLOBAL:
                out_r.append(GLOBAL_TABLE_RADIUS)
                out_s.append(1)
            else:
                out_r.append(table_radius(k, self.border))
                out_s.append(d)
            if radius is not None:
                out_r[-1] = radius[a]
        return tuple(out_r), tuple(out_s)

    # ---------------------------------------------------------------- window
    def window(self, spatial):
        """The :class:`~convattn_mm.ops.WindowSpec` used on a map of size
        ``spatial`` (after the small-map rule), and the padded size."""
        kernel, dil, padded = list(self.kernel_size), list(self.dilation), []
        for a, L in enumerate(spatial):
            k, d = kernel[a], dil[a]
            need = 0 if k == GLOBAL else window_extent(k, d, self.border)
            if need > L and self.small_map == 'shrink':
                kernel[a], dil[a] = GLOBAL, 1
            elif need > L and self.small_map == 'pad':
                L = need
            padded.append(L)
        try:
            spec = make_window(tuple(padded), tuple(kernel), tuple(dil),
                               self.border, self.query_stride)
        except ValueError as e:
            raise ValueError(f'{e} (layer small_map={self.small_map!r}; '
                             f"'shrink' or 'pad' adapt the window)") from None
        return spec, tuple(padded)

    # --------------------------------------------------------------- forward
    def forward(self, x, key_lengths=None):
        """``[B, *spatial, C] -> [B, *out_spatial, out_dims]``.

        ``key_lengths`` (rank 1 only): ``[B]`` valid lengths; keys past a
        sample's length get zero weight and its valid outputs do not depend
        on them (see :mod:`convattn_mm.ops.key_padding`; ``border='mask'``
        or global windows, gather/reference backends).
        """
        if x.dim() != self.rank + 2 or x.shape[-1] != self.embed_dims:
            raise ValueError(
                f'x.shape={tuple(x.shape)}: expected [B, *spatial, C] with '
                f'{self.rank} spatial axes and C={self.embed_dims}')
        B, spatial = x.shape[0], tuple(x.shape[1:-1])
        spec, padded = self.window(spatial)
        if key_lengths is not None and padded != spatial:
            raise NotImplementedError(
                f"key_lengths with small_map='pad' on a map of {spatial}: "
                f"use small_map='shrink'")
        out = None
        if padded == spatial and key_lengths is None:
            out = self._attend_fused(x, spec)
        if out is None:
            q, k, v = self.project_qkv(x)  # [B, H, N, D] (v: [B, H, N, D_v])
            if padded != spatial:
                q, k, v = (self.pad_tokens(t, spatial, padded)
                           for t in (q, k, v))
            # [B, H, Nq, D_v]; subclasses' attend() may not take lengths
            out = (self.attend(q, k, v, spec) if key_lengths is None else
                   self.attend(q, k, v, spec, key_lengths))
        out = out.transpose(1, 2).flatten(-2).unflatten(1, spec.out_shape)
        if padded != spatial:
            keep = tuple(-(-L // s) for L, s in zip(spatial,
                                                    self.query_stride))
            out = out[(slice(None), ) + tuple(slice(0, n) for n in keep)]
        return self.proj_drop(self.proj(out))

    def project_qkv(self, x):
        """The projection hook: ``x [B, *spatial, C]`` -> ``q, k [B, H, N,
        head_dims]`` and ``v [B, H, N, D_v]`` (here ``D_v = head_dims``);
        subclasses with other projections override this, not
        :meth:`forward`."""
        return self._qkv_fused(x).permute(2, 0, 3, 1, 4).unbind(0)

    def _qkv_fused(self, x):
        """The q/k/v projection as one tensor ``[B, N, 3, H, head_dims]``."""
        H, D = self.num_heads, self.head_dims
        # flatten/unflatten, not reshape(B, -1, ...): B may be 0
        return self.qkv(x.flatten(1, -2)).unflatten(-1, (3, H, D))

    def forward_nchw(self, x):
        """``[B, C, *spatial] -> [B, out_dims, *out_spatial]`` (conv layout)."""
        x = self(x.movedim(1, -1))
        # contiguous: see ConvAttention.forward_nchw
        return x.movedim(-1, 1).contiguous()

    def attend(self, q, k, v, spec, key_lengths=None):
        """The attention core on ``[B, H, N, D]`` tensors for a window
        (``key_lengths [B]``: per-sample valid lengths, rank 1; the bias
        path then carries the encoding)."""
        drop = self.attn_drop if self.training else 0.0
        if key_lengths is not None:
            q, k, pos_bias, rel_keys = self.position_terms(q, k, spec)
            if self._recorder is not None:
                self._recorder.record(q, k, spec, self.scale, pos_bias,
                                      rel_keys)
            return padded_attention_bhnd(q, k, v, spec, self.scale,
                                         key_lengths, pos_bias, rel_keys,
                                         self.backend, drop)
        plan = self.plan(q, spec, drop, (k, v))
        q, k, pos_bias, rel_keys = self.position_terms(q, k, spec, plan=plan)
        if self._recorder is not None:
            self._recorder.record(q, k, spec, self.scale, pos_bias, rel_keys)
        return attention_bhnd(q, k, v, spec, self.scale, pos_bias, rel_keys,
                              plan, drop)

    def plan(self, q, spec, dropout_p=0.0, tensors=()):
        """The op's :class:`~convattn_mm.ops.AttentionPlan` for a call with
        queries like ``q`` on window ``spec``: the layer declares what its
        encoding carries and follows the op's decision."""
        enc = self.pos_encoding
        carry = PositionCarry() if enc is None else enc.carry
        if self.causal:  # the future mask is a bias, never extra dims
            carry = dataclasses.replace(carry, bias=True, extra_dims=False)
        params = () if enc is None else tuple(enc.parameters())
        request = attention_request(q, carry, tuple(tensors) + params,
                                    dropout_p)
        return plan_attention(self.backend, spec, request)

    def _attend_fused(self, x, spec):
        """Projection and :meth:`attend` through the C++ kernel's
        q/k/v-fused entry, which reads ``qkv [B, N, 3, H, D]`` in place and
        writes its gradient in that layout (no ``unbind``/``stack``
        copies): ``[B, H, N, D]``, or None when this call cannot take it
        (the plan picks another backend or carries the bias as extra dims,
        autocast or a dtype other than float32/float64, an encoding that
        changes q/k, query stride, recording, attention dropout, a
        subclass's own projection or :meth:`attend`)."""
        enc = self.pos_encoding
        cls = type(self)
        drop = self.attn_drop if self.training else 0.0
        if (cls.attend is not RelPosAttention.attend
                or cls.project_qkv is not RelPosAttention.project_qkv
                or x.device.type != 'cpu'  # no plan twice on other devices
                or spec.strided or self._recorder is not None or drop > 0
                or x.dtype not in (torch.float32, torch.float64)
                or torch.is_autocast_enabled(x.device.type)
                or (enc is not None and type(enc).transform_qk
                    is not RelPosEncoding.transform_qk)):
            return None
        plan = self.plan(x, spec, drop, (self.qkv.weight, ))
        if plan.backend != 'fused_cpu' or plan.bias_as == 'extra_dims':
            return None
        bias, rel = self._position_tables(spec, x.device, x.dtype)
        bias = self._causal_bias(bias, spec, x)
        return fused_cpu.fused_cpu_attention_qkv(self._qkv_fused(x), spec,
                                                 self.scale, bias, rel)

    def _position_tables(self, spec, device, dtype):
        """The encoding's ``pos_bias [H, T]`` and ``rel_keys [H, T, D]``
        (None where absent) on the window's table."""
        if self.pos_encoding is None:
            return None, None
        offsets = spec.table_offsets().to(device)
        bias = self.pos_encoding.pos_bias(offsets)
        rel = self.pos_encoding.rel_keys(offsets)
        return (None if bias is None else bias.to(dtype),
                None if rel is None else rel.to(dtype))

    def position_terms(self, q, k, spec, plan=None):
        """Apply the encoding as ``plan`` says (default: the bias path):
        returns ``q, k, pos_bias [H, T] | None, rel_keys [H, T, D] | None``
        for the op."""
        enc = self.pos_encoding
        if enc is None:
            return q, k, self._causal_bias(None, spec, q), None
        coords = _coords(spec, device=q.device)
        q, k = enc.transform_qk(q, k, coords, coords)
        if plan is not None and plan.bias_as == 'extra_dims':
            q, k = enc.augment_qk(q, k, coords, coords, self.scale)
            return q, k, None, None
        bias, rel = self._position_tables(spec, q.device, q.dtype)
        return q, k, self._causal_bias(bias, spec, q), rel

    def _causal_bias(self, bias, spec, q):
        """``bias [H, T]`` (or None) with ``-inf`` on the future offsets
        ``δ > 0`` when ``causal``."""
        if not self.causal:
            return bias
        future = spec.table_offsets()[:, 0].to(q.device) > 0
        if bias is None:
            bias = q.new_zeros(self.num_heads, future.numel())
        return bias.masked_fill(future, float('-inf'))

    @staticmethod
    def pad_tokens(t, spatial, padded):
        """Zero-pad ``t [B, H, prod(spatial), D]`` at the far end of each
        axis to ``[B, H, prod(padded), D]`` (``small_map='pad'``)."""
        B, H, _, D = t.shape
        t = t.reshape(B, H, *spatial, D)
        widths = []
        for L, P in zip(reversed(spatial), reversed(padded)):
            widths += [0, P - L]
        t = torch.nn.functional.pad(t, [0, 0] + widths)
        return t.flatten(2, -2)

    # ------------------------------------------------------------- recording
    @contextlib.contextmanager
    def recording(self, queries=None, recorder=None):
        """Record attention weights of chosen output queries while active.

        Args:
            queries: list of output-grid coordinates (tuples), or None for
                every query.
            recorder: an :class:`AttentionRecorder` (or subclass) to use
                instead of a new one (``queries`` is then ignored).
        Yields:
            an :class:`AttentionRecorder`; after each forward its
            ``records`` list gains a dict (see
            :func:`convattn_mm.ops.gather.attention_weights`) plus
            ``queries`` and ``out_shape``.
        Costs nothing when not recording (one ``is None`` check).
        """
        rec = AttentionRecorder(queries) if recorder is None else recorder
        prev, self._recorder = self._recorder, rec
        try:
            yield rec
        finally:
            self._recorder = prev

    def extra_repr(self):
        return (f'embed_dims={self.embed_dims}, num_heads={self.num_heads}, '
                f'head_dims={self.head_dims}, out_dims={self.out_dims}, '
                f'kernel_size={self.kernel_size}, dilation={self.dilation}, '
                f'query_stride={self.query_stride}, border={self.border!r}, '
                f'backend={self.backend!r}, small_map={self.small_map!r}' +
                (', causal=True' if self.causal else ''))


class AttentionRecorder:
    """Collects attention weights from :meth:`RelPosAttention.recording`.

    A layer hands its scores' parts to :meth:`record`; a layer whose
    attention is a mixture of several softmaxes (the gated layer) computes
    each with :meth:`weights`, mixes them and hands the result to
    :meth:`add`. Subclasses choose the queries per window
    (:meth:`queries_for`) and where records go (:meth:`add`).
    """

    def __init__(self, queries=None):
        self.queries = None if queries is None else [tuple(q) for q in queries]
        self.records = []

    def queries_for(self, spec):
        """Output-grid coordinates to record on window ``spec`` (None:
        every query)."""
        return self.queries

    def weights(self, q, k, spec, scale, pos_bias=None, rel_keys=None):
        """``softmax_δ(scale · qᵀk_{q+δ} + b_δ)`` of the chosen queries: the
        dict of :func:`~convattn_mm.ops.gather.attention_weights` (``weights
        [B, H, S, Kw]``, ...) plus ``queries``, ``out_shape`` and
        ``in_shape``."""
        queries = self.queries_for(spec)
        select = None
        if queries is not None:
            flat = []
            for c in queries:
                if len(c) != spec.rank or any(
                        not 0 <= ci < n for ci, n in zip(c, spec.out_shape)):
                    raise ValueError(f'query {c} is outside the output grid '
                                     f'{spec.out_shape}')
                flat.append(_flat(c, spec.out_shape))
            select = torch.tensor(flat, device=q.device)
        with torch.no_grad():
            rec = attention_weights(q.detach(), k.detach(), spec, scale,
                                    None if pos_bias is None else
                                    pos_bias.detach(),
                                    None if rel_keys is None else
                                    rel_keys.detach(), select)
        rec['queries'] = queries
        rec['out_shape'] = spec.out_shape
        rec['in_shape'] = spec.in_shape
        return rec

    def add(self, rec):
        """Keep one record (a dict from :meth:`weights`)."""
        self.records.append(rec)

    def record(self, q, k, spec, scale, pos_bias, rel_keys):
        """Record the weights one softmax over the window gives."""
        self.add(self.weights(q, k, spec, scale, pos_bias, rel_keys))


def _flat(coord, shape):
    idx = 0
    for c, n in zip(coord, shape):
        idx = idx * n + c
    return idx


def _coords(spec, device):
    """Pixel coordinates ``[N, rank]`` float of every token of the map (all
    of them, strided layers included: keys live on the whole map)."""
    axes = [
        torch.arange(a.length, dtype=torch.float, device=device)
        for a in spec.axes
    ]
    mesh = torch.meshgrid(*axes, indexing='ij')
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1)
