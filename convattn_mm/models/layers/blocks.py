"""The pre-norm δ-attention + MLP block that the temporal and volume nets stack,
for any spatial rank (``rank`` is a class attribute of each subclass)::

    x = x + DropPath(RelPosAttention(LN(x)))     x [B, *spatial, C]
    x = x + DropPath(MLP(LN(x)))
"""
import torch.nn as nn
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule

from .mlp import Mlp
from .rel_pos_attention import RelPosAttention


class RelPosAttnBlock(BaseModule):
    """Pre-norm residual block of rank-``rank`` δ-attention + MLP on
    ``[B, *spatial, C]`` (windows larger than the map shrink to the axis)."""
    rank = None

    def __init__(self, embed_dims, num_heads, kernel_size, dilation,
                 pos_encoding, mlp_ratio, drop, drop_path, border, backend,
                 init_cfg):
        super().__init__(init_cfg=init_cfg)
        self.norm1 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.attn = RelPosAttention(
            embed_dims, num_heads, kernel_size=kernel_size,
            dilation=dilation, border=border, pos_encoding=pos_encoding,
            proj_drop=drop, backend=backend, small_map='shrink',
            rank=self.rank)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else \
            nn.Identity()
        self.norm2 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.mlp = Mlp(embed_dims, int(embed_dims * mlp_ratio), drop)

    def forward(self, x):
        """``[B, *spatial, C] -> [B, *spatial, C]``."""
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))
