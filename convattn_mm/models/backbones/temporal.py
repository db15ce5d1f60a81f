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

With ``causal=True`` every window holds only the current and past frames
(see ``RelPosAttention(causal=True)``), so the output of frame ``t`` never
depends on frames after ``t``: a real-time lifter. It depends on the last
``receptive_field = 1 + Σ_l (K-1)·d_l`` frames only, and
:class:`TemporalAttnStream` lifts a live stream at a constant cost per new
frame: one forward over those frames.
"""
import collections

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from convattn_mm.models.checks import declare_channels, watch_pretrained
from convattn_mm.models.layers import RelPosAttnBlock
from convattn_mm.registry import MODELS

from ._utils import (VersionedStateDictMixin, block_options, check_dilations,
                     merge_cfgs)


def lifter_input(x, in_channels):
    """A lifter's input ``[B, in_channels, T]`` or ``[B, K, C, T]`` (with
    ``K·C = in_channels``) as ``[B, in_channels, T]``, else ValueError."""
    if x.dim() == 4:
        x = x.flatten(1, 2)
    if x.dim() != 3 or x.shape[1] != in_channels:
        raise ValueError(f'x.shape={tuple(x.shape)}: expected [B, '
                         f'{in_channels}, T] or [B, K, C, T] with '
                         f'K*C={in_channels}')
    return x


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
        causal (bool): windows of the current and past frames only.
    """

    rank = 1

    def __init__(self, embed_dims, num_heads, kernel_size=7, dilation=1,
                 pos_encoding=dict(type='RelativeBiasTable'), mlp_ratio=2.0,
                 drop=0.0, drop_path=0.0, border='shift', backend='auto',
                 causal=False, init_cfg=None):
        super().__init__(embed_dims, num_heads, kernel_size, dilation,
                         pos_encoding, mlp_ratio, drop, drop_path, border,
                         backend, init_cfg, causal=causal)


@MODELS.register_module()
class TemporalAttnNet(VersionedStateDictMixin, BaseModule):
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
        causal (bool): causal windows (a frame sees itself and the past
            only) and the last frame as the target instead of the centre
            one.
        border (str, optional): the blocks' border rule; default ``'mask'``
            when ``causal``, else ``'shift'``.
        out_frames (str): ``'target'`` (one frame, ``[B, C, 1]``) or
            ``'all'`` (``[B, C, T]``).
        drop_rate, drop_path_rate, pos_encoding, backend: as in the block.
        block_cfgs (dict | list[dict], optional): per-block options merged
            over the defaults above (one dict for all blocks or one per
            block); the keys are :class:`TemporalAttnBlock`'s arguments
            except ``embed_dims`` and ``init_cfg`` (e.g. ``num_heads``,
            ``kernel_size``, ``dilation``, ``border``). Unknown keys are a
            ValueError.

    Shapes: ``[B, in_channels, T]`` or ``[B, K, C_kpt, T]`` -> a 1-tuple of
    ``[B, embed_dims, 1]`` (``out_frames='target'``) or
    ``[B, embed_dims, T]``.
    """
    _version = 1  # state-dict key layout (see VersionedStateDictMixin)

    def __init__(self, in_channels, embed_dims=256, depth=4, num_heads=8,
                 kernel_size=3, dilations=(1, 3, 9), causal=False,
                 border=None, out_frames='target',
                 pos_encoding=dict(type='RelativeBiasTable'), mlp_ratio=2.0,
                 drop_rate=0.0, drop_path_rate=0.0, backend='auto',
                 block_cfgs=None,
                 init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02,
                               bias=0.0)):
        super().__init__(init_cfg=init_cfg)
        watch_pretrained(self, init_cfg)
        if out_frames not in ('all', 'target'):
            raise ValueError(f'out_frames={out_frames!r} is not supported; '
                             f"choose one of ['all', 'target']")
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f'depth={depth!r} must be a positive int')
        dilations = check_dilations(dilations)
        if border is None:
            border = 'mask' if causal else 'shift'
        self.in_channels, self.causal = in_channels, causal
        self.out_frames = out_frames
        declare_channels(self, [embed_dims], out_indices=(0, ))
        dilations = [dilations[i % len(dilations)] for i in range(depth)]
        self.embed = nn.Linear(in_channels, embed_dims)
        defaults = [
            dict(num_heads=num_heads, kernel_size=kernel_size,
                 dilation=dilations[i], pos_encoding=pos_encoding,
                 mlp_ratio=mlp_ratio, drop=drop_rate,
                 drop_path=drop_path_rate * i / max(depth - 1, 1),
                 border=border, backend=backend, causal=causal)
            for i in range(depth)
        ]
        cfgs = merge_cfgs(
            defaults, block_cfgs,
            block_options(TemporalAttnBlock,
                          ('embed_dims', 'init_cfg', 'causal')),
            'block_cfgs')
        #: frames an output depends on (away from the ends for 'shift');
        #: None for global windows
        self.receptive_field = None if any(
            c['kernel_size'] == 'global' for c in cfgs) else 1 + sum(
                (c['kernel_size'] - 1) * c['dilation'] for c in cfgs)
        self.blocks = nn.ModuleList(
            TemporalAttnBlock(embed_dims, **cfg) for cfg in cfgs)
        self.norm = nn.LayerNorm(embed_dims, eps=1e-6)

    def forward(self, x):
        """``[B, in_channels, T]`` or ``[B, K, C_kpt, T]`` -> a 1-tuple of
        ``[B, embed_dims, 1 | T]``."""
        x = lifter_input(x, self.in_channels)
        x = self.forward_frames(x.transpose(1, 2))
        if self.out_frames == 'target':
            t = x.shape[1] - 1 if self.causal else x.shape[1] // 2
            x = x[:, t:t + 1]
        return (x.transpose(1, 2).contiguous(), )

    def forward_frames(self, x):
        """Every frame: ``[B, T, in_channels] -> [B, T, embed_dims]``."""
        x = self.embed(x)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class TemporalAttnStream:
    """Lift a live keypoint stream with a causal :class:`TemporalAttnNet`,
    one frame at a time, at a constant cost per frame.

    It keeps the last ``net.receptive_field`` frames and runs the net over
    them for each new frame: the newest output equals the causal net's
    output for that frame on the whole stream (the frames before the
    buffer cannot reach it), and the work per frame is one forward over
    ``receptive_field`` frames whatever the stream's length.

    Example:
        >>> net = TemporalAttnNet(34, 32, depth=2, num_heads=4, causal=True)
        >>> stream = TemporalAttnStream(net.eval())
        >>> stream.push(torch.randn(1, 34)).shape
        torch.Size([1, 32])
    """

    def __init__(self, net):
        if not getattr(net, 'causal', False):
            raise ValueError('TemporalAttnStream needs a causal net '
                             '(TemporalAttnNet(causal=True))')
        if net.receptive_field is None:
            raise ValueError("TemporalAttnStream needs finite windows, not "
                             "kernel_size='global'")
        self.net = net
        self.frames = collections.deque(maxlen=net.receptive_field)

    @torch.no_grad()
    def push(self, frame):
        """``frame [B, in_channels]`` -> the newest frame's features
        ``[B, embed_dims]``."""
        self.frames.append(frame)
        return self.net.forward_frames(torch.stack(tuple(self.frames),
                                                   1))[:, -1]
