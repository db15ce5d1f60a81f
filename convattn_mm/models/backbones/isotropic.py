"""``IsotropicAttnNet``: the CIFAR model of Cordonnier et al. (ICLR 2020).

``[B, 3, H, W]`` -> 2×2 invertible down-sampling (space-to-depth,
``[B, 12, H/2, W/2]``) -> ``Linear(12, D)`` -> ``L`` identical layers
(no pooling) of::

    x = Norm(x + Attn(x))        Attn: RelPosAttention, N_h heads, window
    x = Norm(x + FFN(x))         FFN: Linear(D, F) -> GELU -> Linear(F, D)

(post-norm as in the paper's BERT layers; ``pre_norm=True`` moves the norms
in front of the branches). Paper setting: ``L = 6``, ``N_h = 9``, ``D =
400`` (head dims ``⌊400/9⌋ = 44``), ``F = 512``, global attention, a
quadratic relative encoding (``'quadratic'``: head ``h`` centred on the
``h``-th 3×3 offset, so 9 heads can express a 3×3 convolution) or a learned
one (``'learned'``: a bias table over the offsets).
"""
import torch
import torch.nn as nn
from mmcv.cnn.bricks import DropPath
from mmpretrain.models.backbones.base_backbone import BaseBackbone

from convattn_mm.models.encodings import check_encoding, conv_init_encoding
from convattn_mm.models.layers import Mlp, RelPosAttention
from convattn_mm.registry import MODELS
from ._utils import (FrozenStagesMixin, check_frozen_stages, freeze,
                     normalise_out_indices, run_block, sequential_layer_depth)

ENCODING_SHORTCUTS = ('learned', 'quadratic')


class IsotropicLayer(nn.Module):
    """Attention + FFN on ``[B, H, W, D]``."""

    def __init__(self, dims, num_heads, ffn_dims, kernel_size, dilation,
                 pos_encoding, pre_norm, drop_path, drop, backend,
                 quadratic_init):
        super().__init__()
        self.pre_norm = pre_norm
        self.attn = RelPosAttention(
            dims, num_heads, head_dims=dims // num_heads,
            kernel_size=kernel_size, dilation=dilation, border='shift',
            small_map='shrink',
            pos_encoding=pos_encoding, proj_drop=drop, backend=backend)
        self.quadratic_init = quadratic_init
        self.norm1 = nn.LayerNorm(dims, eps=1e-12)
        self.ffn = Mlp(dims, ffn_dims, drop)
        self.norm2 = nn.LayerNorm(dims, eps=1e-12)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else \
            nn.Identity()

    def forward(self, x):
        if self.pre_norm:
            x = x + self.drop_path(self.attn(self.norm1(x)))
            return x + self.drop_path(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.drop_path(self.attn(x)))
        return self.norm2(x + self.drop_path(self.ffn(x)))


@MODELS.register_module()
class IsotropicAttnNet(FrozenStagesMixin, BaseBackbone):
    """Isotropic attention network (no pooling between layers).

    Args:
        num_layers (int): attention layers. Default 6.
        num_heads (int): heads per layer. Default 9.
        embed_dims (int): hidden size ``D``. Default 400.
        ffn_dims (int): FFN hidden size. Default 512.
        in_channels (int): input channels. Default 3.
        kernel_size (int | str): attention window; ``'global'`` (default,
            the paper's) or an odd int (per-axis tuples too).
        dilation (int | tuple): window dilation, per axis or one for all.
            Default 1.
        pos_encoding (str | dict): ``'quadratic'``, ``'learned'`` or an
            encoding config dict.
        init_mass (float): for ``'quadratic'``: attention mass on each
            head's 3×3 offset at initialisation. Default 0.5.
        pre_norm (bool): pre-norm layers instead of the paper's post-norm.
        out_indices (int | sequence): layers to output. Default ``(-1, )``.
        frozen_stages (int): -1 none, 0 the embedding, k embedding + first k
            layers.
        norm_eval, with_cp, drop_rate, drop_path_rate, backend: as usual.

    Shapes: ``[B, C_in, H, W]`` (H, W even) -> tuple of ``[B, D, H/2, W/2]``.
    """
    def __init__(self,
                 num_layers=6,
                 num_heads=9,
                 embed_dims=400,
                 ffn_dims=512,
                 in_channels=3,
                 kernel_size='global',
                 dilation=1,
                 pos_encoding='quadratic',
                 init_mass=0.5,
                 pre_norm=False,
                 drop_rate=0.0,
                 drop_path_rate=0.0,
                 backend='auto',
                 out_indices=(-1, ),
                 frozen_stages=-1,
                 norm_eval=False,
                 with_cp=False,
                 init_cfg=[
                     dict(type='TruncNormal', layer='Linear', std=0.02,
                          bias=0.0),
                     dict(type='Constant', layer='LayerNorm', val=1.0,
                          bias=0.0)
                 ]):
        super().__init__(init_cfg=init_cfg)
        if isinstance(pos_encoding, str):
            if pos_encoding not in ENCODING_SHORTCUTS:
                raise ValueError(
                    f'pos_encoding={pos_encoding!r} is not supported; choose '
                    f'one of {sorted(ENCODING_SHORTCUTS)} or an encoding '
                    f'config dict')
            quadratic = pos_encoding == 'quadratic'
            enc = (conv_init_encoding(init_mass) if quadratic else
                   dict(type='RelativeBiasTable'))
        else:
            enc = check_encoding(pos_encoding, 'pos_encoding')
            quadratic = False
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f'num_layers={num_layers!r} must be a positive '
                             f'int')
        self.num_layers = self.num_stages = num_layers
        self.embed_dims = embed_dims
        self.out_indices = normalise_out_indices(out_indices, num_layers)
        self.frozen_stages = check_frozen_stages(frozen_stages, num_layers)
        self.norm_eval, self.with_cp = norm_eval, with_cp
        self.downsample = nn.PixelUnshuffle(2)
        self.embed = nn.Linear(in_channels * 4, embed_dims)
        dpr = torch.linspace(0, drop_path_rate, num_layers).tolist()
        self.layers = nn.ModuleList([
            IsotropicLayer(embed_dims, num_heads, ffn_dims, kernel_size,
                           dilation, enc,
                           pre_norm, dpr[i], drop_rate, backend, quadratic)
            for i in range(num_layers)
        ])
        self._freeze_stages()

    def forward(self, x):
        """``[B, C_in, H, W]`` -> tuple of ``[B, D, H/2, W/2]``."""
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            raise ValueError(f'x.shape={tuple(x.shape)}: the 2×2 '
                             f'space-to-depth needs even H and W')
        x = self.embed(self.downsample(x).permute(0, 2, 3, 1))
        outs = []
        for i, layer in enumerate(self.layers):
            x = run_block(layer, x, self.with_cp)
            if i in self.out_indices:
                outs.append(x.permute(0, 3, 1, 2).contiguous())
        return tuple(outs)

    def _freeze_stages(self):
        if self.frozen_stages >= 0:
            freeze(self.embed)
        for i in range(self.frozen_stages):
            freeze(self.layers[i])

    def get_layer_depth(self, param_name, prefix=''):
        """Embedding 0, layers 1..L, others L+1; ``(id, L + 2)``."""
        ids = {'embed': 0}
        ids.update({f'layers.{i}': i + 1 for i in range(self.num_layers)})
        return sequential_layer_depth(param_name, prefix, ids,
                                      self.num_layers)
