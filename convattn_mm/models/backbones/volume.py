"""3-D δ-attention over volumes and video clips.

``VolumeAttnBlock`` is the rank-3 case of the package's layer: every voxel
``q`` (a ``(t, y, x)`` or ``(z, y, x)`` position) attends to ``q+δ`` for the
offsets δ of a ``K_t × K_h × K_w`` window, with a relative term per δ::

    x = x + DropPath(RelPosAttention_3d(LN(x)))     x [B, D, H, W, C]
    x = x + DropPath(MLP(LN(x)))

``VolumeAttnNet`` is a small hierarchical encoder for clips / volumes
(``[B, C_in, D, H, W]``): a patch-embedding ``Conv3d`` (stride
``patch_size``), stages of blocks, and ``Conv3d`` stride-2 (spatial only by
default) downsampling between stages. It returns NCDHW maps, like an
mmaction / mmpose 3D backbone, and takes any clip length or size (windows
larger than the map shrink to the whole axis).
"""
import torch.nn as nn
from mmengine.model import BaseModule

from convattn_mm.models.layers import RelPosAttnBlock
from convattn_mm.registry import MODELS

from ._utils import normalise_out_indices


@MODELS.register_module()
class VolumeAttnBlock(RelPosAttnBlock):
    """Pre-norm residual block of rank-3 δ-attention + MLP on
    ``[B, D, H, W, C]``.

    Args:
        embed_dims (int), num_heads (int).
        kernel_size (int | tuple[int, int, int]): window per axis (odd) or
            ``'global'``. Default ``(3, 7, 7)``.
        dilation (int | tuple): per axis. Default 1.
        pos_encoding (dict | None): default ``RelativeBiasTable`` (one bias
            per 3-D offset and head).
        mlp_ratio, drop, drop_path, border, backend: as usual.
    """

    rank = 3

    def __init__(self, embed_dims, num_heads, kernel_size=(3, 7, 7),
                 dilation=1, pos_encoding=dict(type='RelativeBiasTable'),
                 mlp_ratio=2.0, drop=0.0, drop_path=0.0, border='shift',
                 backend='auto', init_cfg=None):
        super().__init__(embed_dims, num_heads, kernel_size, dilation,
                         pos_encoding, mlp_ratio, drop, drop_path, border,
                         backend, init_cfg)


@MODELS.register_module()
class VolumeAttnNet(BaseModule):
    """Hierarchical rank-3 δ-attention encoder for clips and volumes.

    Args:
        in_channels (int): input channels. Default 3.
        embed_dims (sequence[int]): width per stage. Default (32, 64).
        depths (sequence[int]): blocks per stage. Default (1, 1).
        num_heads (sequence[int]): heads per stage. Default (2, 4).
        patch_size (tuple[int, int, int]): stride of the patch embedding.
            Default (1, 4, 4) (frames kept, 4×4 pixel patches).
        kernel_size (int | tuple): attention window. Default (3, 7, 7).
        down_stride (tuple[int, int, int]): stride between stages.
            Default (1, 2, 2).
        out_indices (int | sequence[int]): stages to return (negatives
            count from the end; a stage named twice is a ValueError).
            Default: the last.
        drop_path_rate, pos_encoding, backend: as in the block.

    Shapes: ``[B, C_in, D, H, W]`` -> tuple of ``[B, C_i, D_i, H_i, W_i]``.
    """

    def __init__(self, in_channels=3, embed_dims=(32, 64), depths=(1, 1),
                 num_heads=(2, 4), patch_size=(1, 4, 4),
                 kernel_size=(3, 7, 7), down_stride=(1, 2, 2),
                 out_indices=(-1, ), pos_encoding=dict(type='RelativeBiasTable'),
                 mlp_ratio=2.0, drop_path_rate=0.0, backend='auto',
                 init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02,
                               bias=0.0)):
        super().__init__(init_cfg=init_cfg)
        n = len(embed_dims)
        if not (len(depths) == len(num_heads) == n) or n == 0:
            raise ValueError(
                f'embed_dims={embed_dims!r}, depths={depths!r}, '
                f'num_heads={num_heads!r} must have one equal, non-zero '
                f'number of stages')
        self.out_indices = normalise_out_indices(out_indices, n)
        self.patch_embed = nn.Conv3d(in_channels, embed_dims[0], patch_size,
                                     stride=patch_size)
        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.downsamples = nn.ModuleList()
        self.stages = nn.ModuleList()
        k = 0
        for i in range(n):
            self.downsamples.append(
                nn.Identity() if i == 0 else nn.Conv3d(
                    embed_dims[i - 1], embed_dims[i], 3, stride=down_stride,
                    padding=1))
            self.stages.append(nn.Sequential(*[
                VolumeAttnBlock(embed_dims[i], num_heads[i], kernel_size,
                                pos_encoding=pos_encoding,
                                mlp_ratio=mlp_ratio, drop_path=rates[k + j],
                                backend=backend)
                for j in range(depths[i])
            ]))
            k += depths[i]
        self.norms = nn.ModuleList(
            nn.LayerNorm(embed_dims[i], eps=1e-6) for i in range(n))

    def forward(self, x):
        """``[B, C_in, D, H, W]`` -> tuple of NCDHW maps."""
        if x.dim() != 5:
            raise ValueError(f'x.shape={tuple(x.shape)}: expected '
                             f'[B, C, D, H, W]')
        x = self.patch_embed(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = self.downsamples[i](x)
            y = stage(x.permute(0, 2, 3, 4, 1))
            if i in self.out_indices:
                outs.append(self.norms[i](y).permute(0, 4, 1, 2, 3)
                            .contiguous())
            x = y.permute(0, 4, 1, 2, 3)
        return tuple(outs)
