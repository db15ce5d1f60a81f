"""A MotionBERT-layout backbone from δ-attention: ``[B, T, K, C]`` poses in,
``[B, T, K, C']`` features out, as mmpose's ``MotionRegressionHead`` reads.

Each stage alternates attention over time, per joint, with attention over
the joints, per frame::

    x = embed(x) + e_joint                      x [B, T, K, C]
    for each stage:
        x = TimeBlock(x)    each joint's [T, C] sequence: rank-1 δ-attention
                            (window, dilation, relative position term)
        x = JointBlock(x)   each frame's [K, C] set: global attention over
                            the K joints
    y = LN(x)

Unlike ``DSTFormer``'s absolute ``temp_embed`` (``seq_len`` = 243
entries), time only enters through the relative offsets ``δ``, so the same
weights run on any number of frames, 243 or more. Joints keep a learned
embedding ``e_joint [K, C]`` (the joints are a fixed, named set).
"""
import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_

from convattn_mm.registry import MODELS

from ._utils import check_dilations
from .temporal import TemporalAttnBlock


@MODELS.register_module()
class MotionAttnNet(BaseModule):
    """Alternating time / joint δ-attention for 3-D pose from 2-D sequences
    (a ``DSTFormer`` replacement in mmpose's MotionBERT configs).

    Args:
        in_channels (int): per-joint input channels (3: x, y, visibility with
            ``MotionBERTLabel(concat_vis=True)``).
        embed_dims (int): width ``C'``. Default 256.
        depth (int): stages (one time block + one joint block each).
            Default 5.
        num_heads (int): heads of every block. Default 8.
        num_keypoints (int): joints ``K``. Default 17.
        kernel_size (int | str): time window in frames, or ``'global'``.
            Default 27.
        dilations (sequence[int]): time-window dilation per stage, cycled.
            Default ``(1, 3, 9)``.
        border (str): time-window border rule. Default ``'shift'``.
        pos_encoding (dict): position term over the time offsets.
            Default ``RelativeBiasTable``.
        mlp_ratio (float), drop_rate (float), drop_path_rate (float),
        backend (str): as :class:`TemporalAttnBlock`.

    Shapes: ``[B, T, K, in_channels]`` (or ``[T, K, in_channels]``) ->
    ``[B, T, K, embed_dims]``, any ``T >= 1``.

    Example:
        >>> net = MotionAttnNet(3, embed_dims=32, depth=2, num_heads=4)
        >>> net(torch.randn(2, 300, 17, 3)).shape
        torch.Size([2, 300, 17, 32])
    """

    def __init__(self,
                 in_channels=3,
                 embed_dims=256,
                 depth=5,
                 num_heads=8,
                 num_keypoints=17,
                 kernel_size=27,
                 dilations=(1, 3, 9),
                 border='shift',
                 pos_encoding=dict(type='RelativeBiasTable'),
                 mlp_ratio=2.0,
                 drop_rate=0.0,
                 drop_path_rate=0.0,
                 backend='auto',
                 init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02,
                               bias=0.0)):
        super().__init__(init_cfg=init_cfg)
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f'depth={depth!r} must be a positive int')
        dilations = check_dilations(dilations)
        self.in_channels, self.embed_dims = in_channels, embed_dims
        self.num_keypoints = num_keypoints
        self.embed = nn.Linear(in_channels, embed_dims)
        self.joint_embed = nn.Parameter(torch.zeros(num_keypoints,
                                                    embed_dims))
        dpr = [drop_path_rate * i / max(2 * depth - 1, 1)
               for i in range(2 * depth)]
        common = dict(mlp_ratio=mlp_ratio, drop=drop_rate, backend=backend)
        self.time_blocks = nn.ModuleList(
            TemporalAttnBlock(
                embed_dims, num_heads, kernel_size=kernel_size,
                dilation=dilations[i % len(dilations)],
                pos_encoding=pos_encoding, drop_path=dpr[2 * i],
                border=border, **common) for i in range(depth))
        self.joint_blocks = nn.ModuleList(
            TemporalAttnBlock(
                embed_dims, num_heads, kernel_size='global',
                pos_encoding=None, drop_path=dpr[2 * i + 1], **common)
            for i in range(depth))
        self.norm = nn.LayerNorm(embed_dims, eps=1e-6)

    def init_weights(self):
        super().init_weights()
        if not (isinstance(self.init_cfg, dict)
                and self.init_cfg.get('type') == 'Pretrained'):
            trunc_normal_(self.joint_embed, std=0.02)

    def forward(self, x):
        """``[B, T, K, C_in]`` -> ``[B, T, K, embed_dims]``."""
        if x.dim() == 3:
            x = x[None]
        if x.dim() != 4 or x.shape[2:] != (self.num_keypoints,
                                           self.in_channels):
            raise ValueError(f'x.shape={tuple(x.shape)}: expected [B, T, '
                             f'{self.num_keypoints}, {self.in_channels}]')
        B, T, K, _ = x.shape
        x = self.embed(x) + self.joint_embed
        C = x.shape[-1]  # explicit, not -1: B may be 0
        for time_blk, joint_blk in zip(self.time_blocks, self.joint_blocks):
            # [B, T, K, C] -> [B*K, T, C]: every joint's sequence
            x = time_blk(x.transpose(1, 2).reshape(B * K, T, C))
            # -> [B*T, K, C]: every frame's joints
            x = x.reshape(B, K, T, C).transpose(1, 2).reshape(B * T, K, C)
            x = joint_blk(x).reshape(B, T, K, C)
        return self.norm(x)
