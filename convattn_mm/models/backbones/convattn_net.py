"""``ConvAttnNet``: a 4-stage hierarchical backbone whose token mixer is
chosen per stage -- convolution, local δ-attention, global δ-attention, or
local δ-attention soft-initialised as a convolution.

Every block is a pre-norm residual pair on channels-last tokens
``x [B, H, W, C]``::

    x = x + DropPath(Mixer(LN(x)))
    x = x + DropPath(MLP(LN(x)))

with ``Mixer`` one of

* ``'conv'``: depthwise ``K×K`` convolution, then ``Linear(C, C)``;
* ``'local'``: :class:`RelPosAttention` with window ``K`` and the block's
  dilation (DiNAT: alternate 1 and a larger dilation for a sparse-global
  view), the stage's position encoding;
* ``'global'``: :class:`RelPosAttention` with ``kernel_size='global'``;
* ``'conv-init'``: ``'local'`` whose encoding is a
  :class:`QuadraticEncoding` with head ``h`` centred on the ``h``-th offset
  of the 3×3 (dilated) grid (centre first, then the 4-neighbours, then the
  corners) and width chosen so that ``init_mass`` of the attention sits on
  that offset: at initialisation the heads form a 3×3 convolution's
  receptive field (Cordonnier et al. 2020, Theorem 1, soft version).

A stem of stride ``stem_stride`` (1, 2 or 4: stride-2 3×3 convs) and a 3×3
stride-2 convolution between stages. Windows adapt to any map size
(``small_map='shrink'``: a window larger than the map attends to the whole
axis), so the backbone takes any input size.
"""
import torch
import torch.nn as nn
from mmcv.cnn.bricks import DropPath
from mmpretrain.models.backbones.base_backbone import BaseBackbone

from convattn_mm.models.encodings import check_encoding, conv_init_encoding
from convattn_mm.models.layers import Mlp, RelPosAttention
from convattn_mm.registry import MODELS
from convattn_mm.utils import check_choice

from ._utils import (FrozenStagesMixin, check_frozen_stages, freeze,
                     normalise_out_indices, per_stage, resolve_arch, run_block,
                     sequential_layer_depth)

MIXERS = ('conv', 'conv-init', 'global', 'local')
ARCH_KEYS = ('embed_dims', 'depths', 'num_heads', 'mixers', 'mlp_ratio')

class ConvMixer(nn.Module):
    """Depthwise ``K×K`` conv then ``Linear``: ``[B, H, W, C] -> same``."""

    def __init__(self, dims, kernel_size):
        super().__init__()
        self.dwconv = nn.Conv2d(dims, dims, kernel_size,
                                padding=kernel_size // 2, groups=dims)
        self.proj = nn.Linear(dims, dims)

    def forward(self, x):
        x = self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.proj(x)


class ConvAttnBlock(nn.Module):
    """One pre-norm block (see the module docstring); ``[B, H, W, C]``."""

    def __init__(self, dims, num_heads, mixer, kernel_size, dilation,
                 pos_encoding, mlp_ratio, drop_path, drop, attn_drop,
                 qkv_bias, border, backend, conv_init_mass):
        super().__init__()
        self.mixer_type = mixer
        self.norm1 = nn.LayerNorm(dims, eps=1e-6)
        if mixer == 'conv':
            self.mixer = ConvMixer(dims, kernel_size)
        else:
            if mixer == 'conv-init':
                pos_encoding = conv_init_encoding(conv_init_mass,
                                                  pos_encoding)
            self.mixer = RelPosAttention(
                dims, num_heads,
                kernel_size='global' if mixer == 'global' else kernel_size,
                dilation=1 if mixer == 'global' else dilation,
                border=border, pos_encoding=pos_encoding, qkv_bias=qkv_bias,
                attn_drop=attn_drop, proj_drop=drop, backend=backend,
                small_map='shrink')
        self.drop_path = DropPath(drop_path) if drop_path > 0 else \
            nn.Identity()
        self.norm2 = nn.LayerNorm(dims, eps=1e-6)
        self.mlp = Mlp(dims, int(dims * mlp_ratio), drop)

    def forward(self, x):
        x = x + self.drop_path(self.mixer(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Downsample(nn.Module):
    """3×3 stride-2 conv + LN: ``[B, H, W, C] -> [B, ⌈H/2⌉, ⌈W/2⌉, C']``."""

    def __init__(self, in_dims, out_dims):
        super().__init__()
        self.conv = nn.Conv2d(in_dims, out_dims, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(out_dims, eps=1e-6)

    def forward(self, x):
        x = self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.norm(x)


class Stem(nn.Module):
    """``[B, C_in, H, W] -> [B, H/s, W/s, C]``: log2(s) stride-2 3×3 convs
    (a stride-1 3×3 conv for ``s = 1``), GELU between, LN at the end."""

    def __init__(self, in_channels, dims, stride):
        super().__init__()
        n = {1: 1, 2: 1, 4: 2}[stride]
        layers, c = [], in_channels
        for i in range(n):
            out = dims if i == n - 1 else dims // 2
            layers.append(nn.Conv2d(c, out, 3, stride=min(stride, 2),
                                    padding=1))
            if i < n - 1:
                layers.append(nn.GELU())
            c = out
        self.convs = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dims, eps=1e-6)

    def forward(self, x):
        return self.norm(self.convs(x).permute(0, 2, 3, 1))


@MODELS.register_module()
class ConvAttnNet(FrozenStagesMixin, BaseBackbone):
    """Hierarchical conv / local / global attention backbone.

    Args:
        arch (str | dict): preset (``'tiny'``/``'t'``: ≈28 M params, ≈4.5
            GFLOPs at 224; ``'small'``/``'s'``; ``'demo'``: a ~0.3 M model
            for CPU demos) or a dict with exactly the keys ``embed_dims``,
            ``depths``, ``num_heads``, ``mixers`` (per-stage lists of 4) and
            ``mlp_ratio``.
        mixers (list[str], optional): override the arch's mixers; each of
            ``'conv'``, ``'local'``, ``'global'``, ``'conv-init'``.
        in_channels (int): input channels. Default 3.
        stem_stride (int): 1, 2 or 4. Default 4.
        kernel_sizes (int | list[int]): per stage: the depthwise kernel of
            ``'conv'`` stages, the window of attention stages (odd).
            Default 7.
        dilations (int | list): per stage an int or a list cycled over the
            stage's blocks (DiNAT: ``[1, 2]`` alternates). Default 1.
        pos_encodings (dict | list | None): the position encoding of
            ``'local'`` / ``'global'`` stages (one config for all or one per
            stage); ``'conv-init'`` stages use a QuadraticEncoding (a dict
            given for such a stage overrides its keys). Default
            ``dict(type='RelativeBiasTable')``.
        conv_init_mass (float): attention mass on each head's offset at
            initialisation for ``'conv-init'`` stages. Default 0.9.
        border (str): border rule of the attention windows. Default
            ``'shift'`` (NATTEN).
        backend (str): attention op backend. Default ``'auto'``.
        qkv_bias, drop_rate, attn_drop_rate, drop_path_rate: as usual
            (drop path rises linearly over all blocks).
        out_indices (int | sequence): stages to output (negatives count from
            the end). Default ``(3, )``.
        frozen_stages (int): -1 none, 0 stem, k stem + first k stages.
        norm_eval (bool): keep BatchNorms in eval mode (the backbone has
            none of its own; kept for the common interface). with_cp
            (bool): activation checkpointing per block.

    Shapes: ``[B, in_channels, H, W]`` -> tuple of ``[B, C_i, H_i, W_i]``
    with ``H_i = ⌈H / (stem_stride · 2^i)⌉``; ``C_i = embed_dims[i]``.

    Example:
        >>> net = ConvAttnNet('demo', stem_stride=2, out_indices=(2, 3))
        >>> [o.shape for o in net(torch.randn(1, 3, 32, 32))]
        [torch.Size([1, 64, 4, 4]), torch.Size([1, 96, 2, 2])]
    """
    arch_zoo = {
        **dict.fromkeys(
            ['t', 'tiny'],
            dict(embed_dims=[64, 128, 256, 512], depths=[4, 8, 18, 5],
                 num_heads=[2, 4, 8, 16],
                 mixers=['conv', 'conv', 'local', 'global'], mlp_ratio=3.0)),
        **dict.fromkeys(
            ['s', 'small'],
            dict(embed_dims=[80, 160, 320, 640], depths=[3, 4, 18, 5],
                 num_heads=[2, 4, 10, 20],
                 mixers=['conv', 'conv', 'local', 'global'], mlp_ratio=3.0)),
        'demo':
        dict(embed_dims=[32, 48, 64, 96], depths=[1, 1, 2, 1],
             num_heads=[2, 4, 4, 4], mixers=['conv', 'local', 'local',
                                              'global'], mlp_ratio=2.0),
    }
    num_stages = 4

    def __init__(self,
                 arch='tiny',
                 mixers=None,
                 in_channels=3,
                 stem_stride=4,
                 kernel_sizes=7,
                 dilations=1,
                 pos_encodings=dict(type='RelativeBiasTable'),
                 conv_init_mass=0.9,
                 border='shift',
                 backend='auto',
                 qkv_bias=True,
                 drop_rate=0.0,
                 attn_drop_rate=0.0,
                 drop_path_rate=0.0,
                 out_indices=(3, ),
                 frozen_stages=-1,
                 norm_eval=False,
                 with_cp=False,
                 init_cfg=[
                     dict(type='TruncNormal', layer='Linear', std=0.02,
                          bias=0.0),
                     dict(type='Kaiming', layer='Conv2d', mode='fan_out',
                          nonlinearity='relu'),
                     dict(type='Constant', layer='LayerNorm', val=1.0,
                          bias=0.0)
                 ]):
        super().__init__(init_cfg=init_cfg)
        n = self.num_stages
        self.arch_settings = resolve_arch(arch, self.arch_zoo, ARCH_KEYS)
        for key in ('embed_dims', 'depths', 'num_heads', 'mixers'):
            per_stage(self.arch_settings[key], n, f'arch.{key}')
        if mixers is not None:
            self.arch_settings['mixers'] = per_stage(mixers, n, 'mixers')
        self.embed_dims = list(self.arch_settings['embed_dims'])
        self.depths = list(self.arch_settings['depths'])
        self.mixers = list(self.arch_settings['mixers'])
        num_heads = self.arch_settings['num_heads']
        for i, m in enumerate(self.mixers):
            check_choice(m, MIXERS, f'mixers[{i}]')
        check_choice(stem_stride, (1, 2, 4), 'stem_stride')
        kernel_sizes = per_stage(kernel_sizes, n, 'kernel_sizes')
        for i, k in enumerate(kernel_sizes):
            if not isinstance(k, int) or k < 1 or k % 2 == 0:
                raise ValueError(f'kernel_sizes[{i}]={k!r} must be an odd '
                                 f'positive int')
        dilations = per_stage(dilations, n, 'dilations')
        encodings = per_stage(pos_encodings, n, 'pos_encodings')
        encodings = [check_encoding(e, f'pos_encodings[{i}]')
                     for i, e in enumerate(encodings)]
        for i, (m, e) in enumerate(zip(self.mixers, encodings)):
            if m == 'conv-init' and e is not None:
                if isinstance(pos_encodings, (list, tuple)):
                    if e['type'] != 'QuadraticEncoding':
                        raise ValueError(
                            f"pos_encodings[{i}].type={e['type']!r}: a "
                            f"'conv-init' stage uses 'QuadraticEncoding'")
                    encodings[i] = {k: v for k, v in e.items() if k != 'type'}
                else:
                    encodings[i] = None  # broadcast configs: attention only
        self.out_indices = normalise_out_indices(out_indices, n)
        self.frozen_stages = check_frozen_stages(frozen_stages, n)
        self.norm_eval, self.with_cp = norm_eval, with_cp

        self.stem = Stem(in_channels, self.embed_dims[0], stem_stride)
        total = sum(self.depths)
        dpr = torch.linspace(0, drop_path_rate, total).tolist()
        self.stages = nn.ModuleList()
        block = 0
        for i in range(n):
            dil = dilations[i] if isinstance(dilations[i],
                                             (list, tuple)) else [dilations[i]]
            blocks = []
            for j in range(self.depths[i]):
                blocks.append(
                    ConvAttnBlock(self.embed_dims[i], num_heads[i],
                                  self.mixers[i], kernel_sizes[i],
                                  dil[j % len(dil)], encodings[i],
                                  self.arch_settings['mlp_ratio'],
                                  dpr[block + j], drop_rate, attn_drop_rate,
                                  qkv_bias, border, backend, conv_init_mass))
            block += self.depths[i]
            stage = nn.Module()
            stage.downsample = Downsample(self.embed_dims[i - 1],
                                          self.embed_dims[i]) if i else None
            stage.blocks = nn.ModuleList(blocks)
            self.stages.append(stage)
        for i in self.out_indices:
            self.add_module(f'norm{i}',
                            nn.LayerNorm(self.embed_dims[i], eps=1e-6))
        self._freeze_stages()

    def forward(self, x):
        """``[B, C_in, H, W]`` -> tuple of ``[B, C_i, H_i, W_i]``."""
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            if stage.downsample is not None:
                x = stage.downsample(x)
            for blk in stage.blocks:
                x = run_block(blk, x, self.with_cp)
            if i in self.out_indices:
                out = getattr(self, f'norm{i}')(x)
                outs.append(out.permute(0, 3, 1, 2).contiguous())
        return tuple(outs)

    def _freeze_stages(self):
        if self.frozen_stages >= 0:
            freeze(self.stem)
        for i in range(self.frozen_stages):
            freeze(self.stages[i])
            if i in self.out_indices:
                freeze(getattr(self, f'norm{i}'))

    def get_layer_depth(self, param_name, prefix=''):
        """Layer id for layer-wise lr decay: stem 0, blocks 1..N in order
        (a stage's downsample goes with its first block), final norms and
        anything outside the backbone N+1; returns ``(id, N + 2)``."""
        ids, k = {'stem': 0}, 0
        for i, d in enumerate(self.depths):
            ids[f'stages.{i}.downsample'] = k + 1
            for j in range(d):
                k += 1
                ids[f'stages.{i}.blocks.{j}'] = k
        return sequential_layer_depth(param_name, prefix, ids, k)
