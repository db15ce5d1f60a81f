"""mmpose's ``TCN`` (VideoPose3D) with every temporal convolution a
δ-attention layer: the target of :func:`convattn_mm.convert.tcn_to_attention`
(a registered backbone that lives with the converter, as ``ConvToAttention``
does: its layers are built by :func:`conv_to_attention`).

The TCN's convolutions are dilated and *unpadded* ('valid'): a kernel ``k``
at dilation ``d`` shortens the sequence by ``(k-1)·d``, and each block's
residual is the input sliced to the same frames. Attention reproduces a
valid convolution exactly as the zero-padded ('same') convolution of the
same weights -- a :class:`ConvAttention` with ``border='zeros'`` and one
head per kernel tap (``convattn_mm.convert.conv_to_attention``) -- followed
by dropping ``(k-1)·d/2`` frames at each end: those are the only outputs
whose window reaches the padding. Layout (``T`` frames in)::

    x = Drop(ReLU(BN(Crop(Attn_{k0, d=1}(x)))))               expand
    for block i (k_i, d_i = k0·k1·...·k_{i-1}):
        y = Drop(ReLU(BN(Crop(Attn_{k_i, d_i}(x)))))
        y = Drop(ReLU(BN(Conv1x1(y))))
        x = y + x[:, :, p_i + s_i : T_i - p_i + s_i]          p_i = (k_i-1)·d_i/2
                                                             s_i = p_i if causal
    outputs: every block's x, [B, C, T - Σ (k-1)·d]

so a ``receptive_field = 1 + Σ (k-1)·d``-frame input gives one frame, as
the TCN (27 frames for kernels (3, 3, 3)).

Cost against the TCN: attention computes the ``(k-1)·d`` cropped frames of
each layer too, and the TCN's ``use_stride_conv`` trick (only the frames
that the last layer needs) does not apply; the taps' products are the
convolution's (``proj``), plus the softmax over ``k`` positions.
"""
import torch.nn as nn
from mmengine.model import BaseModule

from convattn_mm.models.backbones.temporal import lifter_input
from convattn_mm.registry import MODELS
from convattn_mm.utils import check_choice

from .conv import conv_to_attention

CONV_INITS = ('exact', 'gated', 'quadratic')


def temporal_conv_attention(in_channels, out_channels, kernel_size, dilation,
                            conv_init='exact', qk_dims=None, weight=None,
                            backend='auto'):
    """The :class:`ConvAttention` of a ('same'-padded) ``Conv1d`` with
    ``weight [out, in, k]`` (a default-initialised conv when None), built by
    :func:`convattn_mm.convert.conv_to_attention` with ``conv_init``."""
    conv = nn.Conv1d(in_channels, out_channels, kernel_size,
                     dilation=dilation,
                     padding=(kernel_size - 1) * dilation // 2, bias=False)
    if weight is not None:
        conv.weight.data.copy_(weight)
    return conv_to_attention(conv, init=conv_init, qk_dims=qk_dims,
                             backend=backend)


class _ValidAttn(nn.Module):
    """A :class:`ConvAttention` over ``[B, C, T]`` cropped to the frames of
    the unpadded convolution, ``[B, C', T - (k-1)·d]``."""

    def __init__(self, attn, crop):
        super().__init__()
        self.attn, self.crop = attn, crop

    def forward(self, x):
        y = self.attn(x)
        return y[:, :, self.crop:y.shape[2] - self.crop]


@MODELS.register_module()
class TCNAttnNet(BaseModule):
    """mmpose's ``TCN`` with δ-attention in place of its temporal
    convolutions (module doc); same arguments, same outputs.

    Args:
        in_channels (int): ``K · C_kpt``.
        stem_channels (int): width. Default 1024.
        num_blocks (int): residual blocks. Default 2.
        kernel_sizes (sequence[int]): odd, ``num_blocks + 1`` entries.
        dropout (float): dropout rate. Default 0.25.
        causal (bool): residuals aligned to the last frame (the TCN's
            ``causal``; the valid windows themselves are the same).
        residual (bool): residual connections. Default True.
        conv_init (str): the attention layers' state: ``'exact'`` (one-hot
            tables, no content term: the convolution), ``'quadratic'`` or
            ``'gated'`` (trainable content attention started near the
            convolution; see ``conv_to_attention``).
        qk_dims (int, optional): content dims per head for the soft inits.
        backend (str): the attention op backend.

    Shapes: ``[B, in_channels, T]`` or ``[B, K, C_kpt, T]`` -> a tuple of
    ``num_blocks`` tensors ``[B, stem_channels, T_i]``, the last with
    ``T - receptive_field + 1`` frames.
    """

    def __init__(self,
                 in_channels,
                 stem_channels=1024,
                 num_blocks=2,
                 kernel_sizes=(3, 3, 3),
                 dropout=0.25,
                 causal=False,
                 residual=True,
                 conv_init='exact',
                 qk_dims=None,
                 backend='auto',
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        check_choice(conv_init, CONV_INITS, 'conv_init')
        kernel_sizes = tuple(kernel_sizes)
        if len(kernel_sizes) != num_blocks + 1:
            raise ValueError(f'kernel_sizes={kernel_sizes}: expected '
                             f'num_blocks + 1 = {num_blocks + 1} entries')
        if any(not isinstance(k, int) or k < 1 or k % 2 == 0
               for k in kernel_sizes):
            raise ValueError(f'kernel_sizes={kernel_sizes}: expected odd '
                             f'positive ints')
        self.in_channels, self.stem_channels = in_channels, stem_channels
        self.num_blocks, self.kernel_sizes = num_blocks, kernel_sizes
        self.causal, self.residual = causal, residual
        self.dilations = [1]
        for k in kernel_sizes[:-1]:
            self.dilations.append(self.dilations[-1] * k)
        self.receptive_field = 1 + sum(
            (k - 1) * d for k, d in zip(kernel_sizes, self.dilations))
        attn = dict(conv_init=conv_init, qk_dims=qk_dims, backend=backend)

        def valid(cin, k, d):
            return _ValidAttn(
                temporal_conv_attention(cin, stem_channels, k, d, **attn),
                (k - 1) * d // 2)

        self.expand = valid(in_channels, kernel_sizes[0], 1)
        self.expand_bn = nn.BatchNorm1d(stem_channels)
        self.blocks = nn.ModuleList()
        for k, d in zip(kernel_sizes[1:], self.dilations[1:]):
            block = nn.Module()
            block.attn = valid(stem_channels, k, d)
            block.bn1 = nn.BatchNorm1d(stem_channels)
            block.conv2 = nn.Conv1d(stem_channels, stem_channels, 1,
                                    bias=False)
            block.bn2 = nn.BatchNorm1d(stem_channels)
            self.blocks.append(block)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x):
        x = lifter_input(x, self.in_channels)
        if x.shape[2] < self.receptive_field:
            raise ValueError(f'x.shape={tuple(x.shape)}: needs at least '
                             f'receptive_field={self.receptive_field} frames')
        x = self.drop(self.relu(self.expand_bn(self.expand(x))))
        outs = []
        for blk in self.blocks:
            y = self.drop(self.relu(blk.bn1(blk.attn(x))))
            y = self.drop(self.relu(blk.bn2(blk.conv2(y))))
            if self.residual:
                pad = blk.attn.crop
                start = pad + (pad if self.causal else 0)
                y = y + x[:, :, start:start + y.shape[2]]
            x = y
            outs.append(x)
        return tuple(outs)
