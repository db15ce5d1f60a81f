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

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from convattn_mm.ops import (BORDERS, GLOBAL, attention_bhnd, check_backend,
                             make_window, to_tuple)
from convattn_mm.ops.windows import table_radius, window_extent
from convattn_mm.ops.gather import attention_weights
from convattn_mm.registry import MODELS, build_module
from convattn_mm.utils import check_choice

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
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        check_choice(rank, (1, 2, 3), 'rank')
        if head_dims is None:
            if embed_dims % num_heads:
                raise ValueError(
                    f'embed_dims={embed_dims} is not divisible by '
                    f'num_heads={num_heads}; pass head_dims explicitly')
            head_dims = embed_dims // num_heads
        check_choice(border, BORDERS, 'border')
        check_backend(backend)
        check_choice(small_map, SMALL_MAP_RULES, 'small_map')
        if small_map == 'pad' and border != 'zeros':
            raise ValueError(f"small_map='pad' is exact only for "
                             f"border='zeros', got border={border!r}")
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.head_dims = head_dims
        self.out_dims = out_dims or embed_dims
        self.rank = rank
        self.kernel_size = to_tuple(kernel_size, rank, 'kernel_size',
                                    allow_global=True)
        for k in self.kernel_size:
            if k != GLOBAL and k % 2 == 0:
                raise ValueError(f'kernel_size={kernel_size!r}: window sizes '
                                 f"must be odd or 'global'")
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
    def forward(self, x):
        """``[B, *spatial, C] -> [B, *out_spatial, out_dims]``."""
        if x.dim() != self.rank + 2 or x.shape[-1] != self.embed_dims:
            raise ValueError(
                f'x.shape={tuple(x.shape)}: expected [B, *spatial, C] with '
                f'{self.rank} spatial axes and C={self.embed_dims}')
        B, spatial = x.shape[0], tuple(x.shape[1:-1])
        spec, padded = self.window(spatial)
        q, k, v = self.project_qkv(x)  # [B, H, N, D] (v: [B, H, N, D_v])
        if padded != spatial:
            q, k, v = (self.pad_tokens(t, spatial, padded)
                       for t in (q, k, v))
        out = self.attend(q, k, v, spec)  # [B, H, Nq, D_v]
        out = out.transpose(1, 2).reshape(B, *spec.out_shape, -1)
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
        B, H, D = x.shape[0], self.num_heads, self.head_dims
        qkv = self.qkv(x).reshape(B, -1, 3, H, D).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)

    def forward_nchw(self, x):
        """``[B, C, *spatial] -> [B, out_dims, *out_spatial]`` (conv layout)."""
        x = self(x.movedim(1, -1))
        # contiguous: see ConvAttention.forward_nchw
        return x.movedim(-1, 1).contiguous()

    def attend(self, q, k, v, spec):
        """The attention core on ``[B, H, N, D]`` tensors for a window."""
        q, k, pos_bias, rel_keys = self.position_terms(q, k, spec)
        if self._recorder is not None:
            self._recorder.record(q, k, spec, self.scale, pos_bias, rel_keys)
        drop = self.attn_drop if self.training else 0.0
        return attention_bhnd(q, k, v, spec, self.scale, pos_bias, rel_keys,
                              self.backend, drop)

    def position_terms(self, q, k, spec):
        """Apply the encoding: returns ``q, k, pos_bias [H, T] | None,
        rel_keys [H, T, D] | None`` for the op."""
        enc = self.pos_encoding
        if enc is None:
            return q, k, None, None
        coords = _coords(spec, device=q.device)
        q, k = enc.transform_qk(q, k, coords, coords)
        if enc.can_augment and self._use_augmentation(q):
            q, k = enc.augment_qk(q, k, coords, coords, self.scale)
            return q, k, None, None
        offsets = spec.table_offsets().to(q.device)
        bias = enc.pos_bias(offsets)
        rel = enc.rel_keys(offsets)
        bias = None if bias is None else bias.to(q.dtype)
        rel = None if rel is None else rel.to(q.dtype)
        return q, k, bias, rel

    def _use_augmentation(self, q):
        """Quadratic scores as extra head dims when running on NATTEN."""
        return self.backend == 'natten' or (self.backend == 'auto'
                                            and q.is_cuda)

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
        return t.reshape(B, H, -1, D)

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
                f'backend={self.backend!r}, small_map={self.small_map!r}')


class AttentionRecorder:
    """Collects attention weights from :meth:`RelPosAttention.recording`."""

    def __init__(self, queries=None):
        self.queries = None if queries is None else [tuple(q) for q in queries]
        self.records = []

    def record(self, q, k, spec, scale, pos_bias, rel_keys):
        select = None
        if self.queries is not None:
            flat = []
            for c in self.queries:
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
        rec['queries'] = self.queries
        rec['out_shape'] = spec.out_shape
        rec['in_shape'] = spec.in_shape
        self.records.append(rec)


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
