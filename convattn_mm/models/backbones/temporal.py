"""1-D δ-attention over time: a pose-sequence encoder for 2D→3D lifting.

``TemporalAttnBlock`` is the rank-1 case of the package's layer: every frame
``t`` attends to the frames ``t+δ`` of a window of ``kernel_size`` frames
(dilation ``d``), with a relative position term per offset ``δ``::

    x = x + DropPath(RelPosAttention_1d(LN(x)))     x [B, T, C]
    x = x + DropPath(MLP(LN(x)))

``TemporalAttnNet`` is a drop-in for mmpose's ``TCN`` backbone in a
``PoseLifter`` (VideoPose3D style): keypoint sequences ``[B, K·C_kpt, T]``
(or ``[B, K, C_kpt, T]``) are embedded per frame, mixed by a stack of
temporal blocks whose dilations grow (1, 3, 9, ... like the TCN's receptive
field), and the centre frame (or the last one when ``causal``) is returned
as ``[B, C, 1]`` -- what ``TemporalRegressionHead`` reads.
"""
import torch.nn as nn
from mmengine.model import BaseModule

from convattn_mm.models.layers import RelPosAttnBlock
from convattn_mm.registry import MODELS


@MODELS.register_module()
class TemporalAttnBlock(RelPosAttnBlock):
    """Pre-norm residual block of rank-1 δ-attention + MLP on ``[B, T, C]``.

    Args:
        embed_dims (int): channels ``C``.
        num_heads (int): heads.
        kernel_size (int | str): window in frames (odd) or ``'global'``.
        dilation (int): window dilation in frames.
        pos_encoding (dict | None): position term over the offsets δ (frames);
            default ``RelativeBiasTable``.
        mlp_ratio (float), drop (float), drop_path (float): as usual.
        border (str): window border rule (``'shift'``: every frame sees a
            full window; ``'mask'``: centred windows, cut at the ends).
    """

    rank = 1

    def __init__(self, embed_dims, num_heads, kernel_size=7, dilation=1,
                 pos_encoding=dict(type='RelativeBiasTable'), mlp_ratio=2.0,
                 drop=0.0, drop_path=0.0, border='shift', backend='auto',
                 init_cfg=None):
        super().__init__(embed_dims, num_heads, kernel_size, dilation,
                         pos_encoding, mlp_ratio, drop, drop_path, border,
                         backend, init_cfg)


@MODELS.register_module()
class TemporalAttnNet(BaseModule):
    """Keypoint-sequence encoder for mmpose's ``PoseLifter`` (a ``TCN``
    replacement).

    Args:
        in_channels (int): ``K · C_kpt`` (e.g. ``2 * 17``).
        embed_dims (int): width. Default 256.
        depth (int): temporal blocks. Default 4.
        num_heads (int): heads per block. Default 8.
        kernel_size (int): window in frames. Default 3.
        dilations (sequence[int]): per block, cycled; default ``(1, 3, 9)``
            (the receptive field of a 3-block TCN with kernel 3: 27 frames).
        causal (bool): return the last frame instead of the centre one.
        out_frames (str): ``'target'`` (one frame, ``[B, C, 1]``) or
            ``'all'`` (``[B, C, T]``).
        drop_rate, drop_path_rate, pos_encoding, backend: as in the block.

    Shapes: ``[B, in_channels, T]`` or ``[B, K, C_kpt, T]`` -> a 1-tuple of
    ``[B, embed_dims, 1]`` (``out_frames='target'``) or
    ``[B, embed_dims, T]``.
    """

    def __init__(self, in_channels, embed_dims=256, depth=4, num_heads=8,
                 kernel_size=3, dilations=(1, 3, 9), causal=False,
                 out_frames='target',
                 pos_encoding=dict(type='RelativeBiasTable'), mlp_ratio=2.0,
                 drop_rate=0.0, drop_path_rate=0.0, backend='auto',
                 init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02,
                               bias=0.0)):
        super().__init__(init_cfg=init_cfg)
        if out_frames not in ('all', 'target'):
            raise ValueError(f'out_frames={out_frames!r} is not supported; '
                             f"choose one of ['all', 'target']")
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f'depth={depth!r} must be a positive int')
        if isinstance(dilations, int):
            dilations = (dilations, )
        if not dilations or not all(
                isinstance(d, int) and d >= 1 for d in dilations):
            raise ValueError(f'dilations={dilations!r} must be positive ints')
        self.in_channels, self.causal = in_channels, causal
        self.out_frames = out_frames
        self.embed = nn.Linear(in_channels, embed_dims)
        self.blocks = nn.ModuleList(
            TemporalAttnBlock(
                embed_dims, num_heads, kernel_size=kernel_size,
                dilation=dilations[i % len(dilations)],
                pos_encoding=pos_encoding, mlp_ratio=mlp_ratio,
                drop=drop_rate,
                drop_path=drop_path_rate * i / max(depth - 1, 1),
                backend=backend) for i in range(depth))
        self.norm = nn.LayerNorm(embed_dims, eps=1e-6)

    def forward(self, x):
        if x.dim() == 4:
            x = x.flatten(1, 2)
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f'x.shape={tuple(x.shape)}: expected [B, '
                             f'{self.in_channels}, T] or [B, K, C, T] with '
                             f'K*C={self.in_channels}')
        x = self.embed(x.transpose(1, 2))  # [B, T, C]
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        if self.out_frames == 'target':
            t = x.shape[1] - 1 if self.causal else x.shape[1] // 2
            x = x[:, t:t + 1]
        return (x.transpose(1, 2).contiguous(), )
