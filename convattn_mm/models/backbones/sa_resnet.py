"""``SAResNet``: ResNet-18/50 whose 3×3 convolutions are δ-attention
(stand-alone self-attention, Ramachandran et al. 2019).

Each 3×3 conv ``(C_in -> C_out, stride s)`` of a ResNet block becomes
:class:`RelPosAttention` ``(embed_dims=C_in, out_dims=C_out, kernel_size=K,
query_stride=s, border='zeros', small_map='pad')``: a ``K×K`` neighbourhood
over a zero-padded map, evaluated at the conv's output positions
(``⌈L / s⌉``), so every feature map has the ResNet's shape. With
``conv_init=True`` the position term is a :class:`QuadraticEncoding` whose
head ``h`` is centred on the ``h``-th 3×3 offset with ``init_mass`` of the
attention there: a soft 3×3 convolution at initialisation.
"""
import torch
import torch.nn as nn
from mmcv.cnn.bricks import DropPath
from mmpretrain.models.backbones.base_backbone import BaseBackbone

from convattn_mm.models.encodings import check_encoding, conv_init_encoding
from convattn_mm.models.layers import RelPosAttention
from convattn_mm.registry import MODELS
from convattn_mm.utils import check_choice

from ._utils import (FrozenStagesMixin, check_frozen_stages, freeze,
                     normalise_out_indices, run_block, sequential_layer_depth)

STEMS = ('cifar', 'imagenet')


class SAConv(nn.Module):
    """A 3×3 conv's replacement: ``[B, C_in, H, W] -> [B, C_out, ⌈H/s⌉,
    ⌈W/s⌉]`` through :class:`RelPosAttention` (NCHW in and out)."""

    def __init__(self, in_dims, out_dims, stride, num_heads, kernel_size,
                 pos_encoding, conv_init, init_mass, backend):
        super().__init__()
        if out_dims % num_heads:
            raise ValueError(f'num_heads={num_heads} does not divide the '
                             f'stage width {out_dims}')
        if conv_init:
            pos_encoding = conv_init_encoding(init_mass, pos_encoding)
        self.attn = RelPosAttention(
            in_dims, num_heads, head_dims=out_dims // num_heads,
            out_dims=out_dims, kernel_size=kernel_size, query_stride=stride,
            border='zeros', small_map='pad', pos_encoding=pos_encoding,
            backend=backend)
        self.conv_init = conv_init

    def forward(self, x):
        return self.attn.forward_nchw(x)


def _shortcut(in_dims, out_dims, stride):
    if stride == 1 and in_dims == out_dims:
        return None
    return nn.Sequential(
        nn.Conv2d(in_dims, out_dims, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_dims))


class BasicBlock(nn.Module):
    """``x + SA(ReLU(BN(SA(x))))``, BN after each (ResNet-18/34)."""
    expansion = 1

    def __init__(self, in_dims, planes, stride, drop_path, sa):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = sa(in_dims, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = sa(planes, out, 1)
        self.bn2 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_dims, out, stride)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else \
            nn.Identity()

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(identity + self.drop_path(y))


class Bottleneck(nn.Module):
    """1×1 conv, SA (stride), 1×1 conv ×4, BN after each (ResNet-50)."""
    expansion = 4

    def __init__(self, in_dims, planes, stride, drop_path, sa):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_dims, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = sa(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_dims, out, stride)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else \
            nn.Identity()

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(identity + self.drop_path(y))


@MODELS.register_module()
class SAResNet(FrozenStagesMixin, BaseBackbone):
    """ResNet with δ-attention in place of its 3×3 convolutions.

    Args:
        depth (int): 18 or 50.
        in_channels (int): input channels. Default 3.
        base_channels (int): width of the first stage. Default 64.
        stem (str): ``'imagenet'`` (7×7 stride-2 conv + 3×3 max-pool, /4) or
            ``'cifar'`` (3×3 stride-1 conv, /1).
        num_heads (int): heads of every attention layer. Default 8.
        kernel_size (int): attention window (3 = the conv's; SASA used 7).
        pos_encoding (dict | None): position encoding; default
            ``RelativeBiasTable`` (``QuadraticEncoding`` when ``conv_init``,
            which requires that type).
        conv_init (bool): soft conv-initialisation (see module docstring).
        init_mass (float): attention mass on each head's offset at init.
        backend (str): attention op backend.
        out_indices, frozen_stages (-1 none, 0 stem, k stem + k stages),
        norm_eval, with_cp, drop_path_rate: as in mmpretrain's ResNet.

    Shapes: ``[B, C_in, H, W]`` -> tuple of ``[B, C_i, H_i, W_i]``,
    ``C_i = base_channels · 2^i · expansion``, ``H_i = H / (r · 2^i)`` with
    ``r`` 4 (imagenet stem) or 1 (cifar stem), rounded up.
    """
    arch_settings = {
        18: (BasicBlock, (2, 2, 2, 2)),
        50: (Bottleneck, (3, 4, 6, 3)),
    }
    num_stages = 4

    def __init__(self,
                 depth=18,
                 in_channels=3,
                 base_channels=64,
                 stem='imagenet',
                 num_heads=8,
                 kernel_size=3,
                 pos_encoding=None,
                 conv_init=False,
                 init_mass=0.9,
                 backend='auto',
                 drop_path_rate=0.0,
                 out_indices=(3, ),
                 frozen_stages=-1,
                 norm_eval=False,
                 with_cp=False,
                 init_cfg=[
                     dict(type='Kaiming', layer='Conv2d'),
                     dict(type='TruncNormal', layer='Linear', std=0.02,
                          bias=0.0),
                     dict(type='Constant', val=1,
                          layer=['_BatchNorm', 'GroupNorm'])
                 ]):
        super().__init__(init_cfg=init_cfg)
        if depth not in self.arch_settings:
            raise KeyError(f'depth={depth!r} is not supported; choose one of '
                           f'{sorted(self.arch_settings)}')
        check_choice(stem, STEMS, 'stem')
        if not isinstance(kernel_size, int) or kernel_size % 2 == 0:
            raise ValueError(f'kernel_size={kernel_size!r} must be an odd int')
        pos_encoding = check_encoding(pos_encoding, 'pos_encoding')
        if conv_init and pos_encoding is not None:
            if pos_encoding['type'] != 'QuadraticEncoding':
                raise ValueError(
                    f"pos_encoding.type={pos_encoding['type']!r}: "
                    f"conv_init=True needs 'QuadraticEncoding' (or None)")
            pos_encoding = {k: v for k, v in pos_encoding.items()
                            if k != 'type'}
        elif pos_encoding is None and not conv_init:
            pos_encoding = dict(type='RelativeBiasTable')
        self.depth = depth
        self.out_indices = normalise_out_indices(out_indices,
                                                 self.num_stages)
        self.frozen_stages = check_frozen_stages(frozen_stages,
                                                 self.num_stages)
        self.norm_eval, self.with_cp = norm_eval, with_cp
        block, layers = self.arch_settings[depth]
        self.stage_blocks = layers

        def sa(cin, cout, stride):
            return SAConv(cin, cout, stride, num_heads, kernel_size,
                          pos_encoding, conv_init, init_mass, backend)

        if stem == 'imagenet':
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, base_channels, 7, 2, 3, bias=False),
                nn.BatchNorm2d(base_channels), nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, base_channels, 3, 1, 1, bias=False),
                nn.BatchNorm2d(base_channels), nn.ReLU(inplace=True))
        dpr = torch.linspace(0, drop_path_rate, sum(layers)).tolist()
        self.res_layers = nn.ModuleList()
        in_dims, k = base_channels, 0
        self.out_channels = []
        for i, n in enumerate(layers):
            planes = base_channels * 2**i
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(in_dims, planes, stride, dpr[k], sa))
                in_dims = planes * block.expansion
                k += 1
            self.res_layers.append(nn.ModuleList(blocks))
            self.out_channels.append(in_dims)
        self._freeze_stages()

    def forward(self, x):
        x = self.stem(x)
        outs = []
        for i, layer in enumerate(self.res_layers):
            for blk in layer:
                x = run_block(blk, x, self.with_cp)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self):
        if self.frozen_stages >= 0:
            freeze(self.stem)
        for i in range(self.frozen_stages):
            freeze(self.res_layers[i])

    def get_layer_depth(self, param_name, prefix=''):
        """Stem 0, blocks 1..N in order, others N+1; ``(id, N + 2)``."""
        ids, k = {'stem': 0}, 0
        for i, n in enumerate(self.stage_blocks):
            for j in range(n):
                k += 1
                ids[f'res_layers.{i}.{j}'] = k
        return sequential_layer_depth(param_name, prefix, ids, k)
