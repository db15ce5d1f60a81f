"""``ConvAttention``: relative-δ attention shaped like a convolution, and
its ConViT-style gated variant.

A ``K``-tap convolution (``K = prod(kernel_size)``) is attention with ``K``
heads whose values are the input itself (``V^h = I``, head value dims
``= C_in``) and whose head ``h`` attends to one offset ``Δ_h``::

    y_q = b + Σ_h W_o^h Σ_{δ∈N(q)} a^h_{q,δ} x_{q+δ},
    a^h_{q,·} = softmax_δ( scale · q_qᵀ k_{q+δ} + b^h_δ )

With ``b^h_δ = 0`` at ``δ = Δ_h`` and a large negative value elsewhere
(``a^h`` one-hot), no content term, ``W_o^h = W_{Δ_h}`` and the ``'zeros'``
border, ``y`` *is* the convolution (Cordonnier et al. 2020; docs/design.md section 3);
:func:`convattn_mm.convert.conv_to_attention` builds that state.

Why ``V^h = I`` loses nothing: ``W_o^h V^h`` is any ``C_out × C_in`` map
when ``V^h`` is the identity, so a learned value projection would only add
cost. Content projections are optional (``qk_dims``): with ``qk_dims=0`` the
scores are pure position and the q/k projection is skipped (its output would
be exactly zero, and a zero q/k also gets exactly zero gradient, so nothing
is lost). The layer stays a :class:`RelPosAttention`: the position table and
``proj`` train; build it with ``qk_dims > 0`` to learn content attention.

Cost per output token: attention ``K·K_w·C_in`` MACs, ``proj``
``K·C_in·C_out`` (the convolution's count for ``groups=1``; a grouped conv
becomes a block-diagonal ``proj`` at ``groups`` times the conv's MACs), plus
``2·K·qk_dims·C_in`` for content.
"""
import math

import torch
import torch.nn as nn
from mmengine.model.weight_init import trunc_normal_

from convattn_mm.ops import attention_bhnd
from convattn_mm.registry import MODELS
from convattn_mm.utils import check_choice

from .rel_pos_attention import RelPosAttention

LAYOUTS = ('channels_first', 'channels_last')


@MODELS.register_module()
class ConvAttention(RelPosAttention):
    """Attention with identity values: a drop-in for a convolution.

    Args:
        embed_dims (int): input channels ``C_in`` (= value dims per head).
        num_heads (int): heads (``prod(kernel_size)`` for a converted conv).
        out_dims (int, optional): output channels; default ``embed_dims``.
        qk_dims (int): content query/key dims per head; 0 (default) means no
            content term: scores are position only and no q/k projection
            exists.
        kernel_size, dilation, query_stride, pos_encoding, attn_drop,
        proj_drop, backend, rank: as :class:`RelPosAttention`.
        border (str): default ``'zeros'`` (a zero-padded convolution).
        qkv_bias (bool): bias of the q/k projection.
        small_map (str): default ``'pad'`` (exact on maps smaller than the
            window, like a zero-padded conv).
        layout (str): ``'channels_first'`` (default; ``[B, C, *spatial]``,
            a drop-in for ``nn.Conv*d``) or ``'channels_last'``
            (``[B, *spatial, C]``, as :class:`RelPosAttention`).

    Submodules: ``qk`` (``Linear C -> 2·heads·qk_dims`` laid out
    ``[2, heads, qk_dims]``, or None), ``proj`` (``Linear heads·C_in ->
    out_dims``), ``pos_encoding``. There is no ``qkv``.

    Position terms always take the bias path (the quadratic encoding's
    extra-head-dims form does not see zero-padded keys the way a bias does).

    Example:
        >>> layer = ConvAttention(16, 9, out_dims=32, kernel_size=3,
        ...     pos_encoding=dict(type='RelativeBiasTable'))
        >>> layer(torch.randn(2, 16, 10, 10)).shape
        torch.Size([2, 32, 10, 10])
    """

    def __init__(self,
                 embed_dims,
                 num_heads,
                 out_dims=None,
                 qk_dims=0,
                 kernel_size=3,
                 dilation=1,
                 query_stride=1,
                 border='zeros',
                 pos_encoding=dict(type='RelativeBiasTable'),
                 qkv_bias=True,
                 attn_drop=0.0,
                 proj_drop=0.0,
                 backend='auto',
                 small_map='pad',
                 rank=2,
                 layout='channels_first',
                 init_cfg=None):
        if isinstance(qk_dims, bool) or not isinstance(qk_dims, int) \
                or qk_dims < 0:
            raise ValueError(f'qk_dims={qk_dims!r}: expected an int >= 0 '
                             f'(0 = no content term)')
        check_choice(layout, LAYOUTS, 'layout')
        # head_dims of the base class = the q/k dims (what the scale and the
        # position encoding see); values are the input (C_in per head).
        super().__init__(embed_dims, num_heads, head_dims=max(qk_dims, 1),
                         out_dims=out_dims, kernel_size=kernel_size,
                         dilation=dilation, query_stride=query_stride,
                         border=border, pos_encoding=pos_encoding,
                         qkv_bias=qkv_bias, attn_drop=attn_drop,
                         proj_drop=proj_drop, backend=backend,
                         small_map=small_map, rank=rank, init_cfg=init_cfg)
        del self.qkv
        self.qk_dims, self.layout = qk_dims, layout
        self.value_dims = embed_dims
        self.qk = (nn.Linear(embed_dims, 2 * num_heads * qk_dims,
                             bias=qkv_bias) if qk_dims else None)
        self.proj = nn.Linear(num_heads * embed_dims, self.out_dims)

    # --------------------------------------------------------------- forward
    def forward(self, x):
        """``[B, C, *spatial] -> [B, out_dims, *out_spatial]``
        (``layout='channels_first'``) or channels-last in and out."""
        if self.layout == 'channels_last':
            return self.forward_tokens(x)
        return self.forward_nchw(x)

    def forward_nchw(self, x):
        """``[B, C, *spatial] -> [B, out_dims, *out_spatial]``."""
        if x.dim() != self.rank + 2:
            raise ValueError(
                f'x.shape={tuple(x.shape)}: expected [B, C, *spatial] with '
                f'{self.rank} spatial axes')
        # contiguous NCHW out: in torch 2.14.1, fine-tuning a converted
        # CIFAR ResNet whose convs received these channels-last views
        # corrupted the heap inside oneDNN's convolution backward (gone with
        # torch.backends.mkldnn.enabled = False, or with this copy)
        return self.forward_tokens(x.movedim(1, -1)).movedim(-1,
                                                            1).contiguous()

    def forward_tokens(self, x):
        """``[B, *spatial, C] -> [B, *out_spatial, out_dims]`` (the base
        layer's forward with this layer's :meth:`project_qkv`)."""
        return super().forward(x)

    def project_qkv(self, x):
        """q, k ``[B, H, N, qk_dims]`` (zeros of dim 1 without content) and
        the shared value ``[B, H, N, C_in]`` (a view of ``x``)."""
        B, C, H = x.shape[0], x.shape[-1], self.num_heads
        flat = x.reshape(B, -1, C)
        N = flat.shape[1]
        v = flat[:, None].expand(B, H, N, C)
        if self.qk is None:
            zero = flat.new_zeros(()).expand(B, H, N, 1)
            return zero, zero, v
        qk = self.qk(flat).reshape(B, N, 2, H, self.qk_dims)
        q, k = qk.permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def _use_augmentation(self, q):
        return False

    def init_content(self, std=0.02):
        """Truncated-normal q/k weights (``std``), zero q/k bias."""
        if self.qk is not None:
            trunc_normal_(self.qk.weight, std=std)
            if self.qk.bias is not None:
                nn.init.zeros_(self.qk.bias)

    def extra_repr(self):
        return (super().extra_repr() + f', qk_dims={self.qk_dims}, '
                f'layout={self.layout!r}')


@MODELS.register_module()
class GatedConvAttention(ConvAttention):
    """ConViT-style gated positional attention on :class:`ConvAttention`.

    Per head ``h`` with gate ``g_h = σ(λ_h)``::

        a^h = (1 - g_h) · softmax_δ(scale · qᵀk_{q+δ})
              +      g_h  · softmax_δ(b^h_δ)

    (d'Ascoli et al. 2021). The position branch is the conv-initialised
    encoding; ``gate_init`` sets ``σ(λ)`` at build time (towards 1 = the
    position branch). Outputs of both branches are linear in the weights, so
    the layer runs the op twice and mixes the outputs.

    Args:
        gate_init (float): initial ``σ(λ_h)`` in (0, 1). Default 0.95.
        others: as :class:`ConvAttention`; ``qk_dims`` must be > 0 and
            ``pos_encoding`` set.

    Parameter: ``gate [heads]`` (the logits ``λ``). Recording
    (:meth:`recording`) sees the position branch.
    """

    def __init__(self, *args, gate_init=0.95, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.qk_dims:
            raise ValueError(f'qk_dims={self.qk_dims!r}: the gated layer '
                             f'needs a content term (qk_dims > 0)')
        if self.pos_encoding is None:
            raise ValueError('pos_encoding=None: the gated layer needs a '
                             'position encoding for its position branch')
        if not isinstance(gate_init, (int, float)) or not 0 < gate_init < 1:
            raise ValueError(f'gate_init={gate_init!r} must lie in (0, 1)')
        self.gate = nn.Parameter(
            torch.full((self.num_heads, ),
                       math.log(gate_init / (1 - gate_init))))

    def attend(self, q, k, v, spec):
        zero = q.new_zeros(()).expand(*q.shape[:3], 1)
        position = super().attend(zero, zero, v, spec)
        drop = self.attn_drop if self.training else 0.0
        content = attention_bhnd(q, k, v, spec, self.scale, None, None,
                                 self.backend, drop)
        g = torch.sigmoid(self.gate).to(v.dtype)[None, :, None, None]
        return position * g + content * (1 - g)
