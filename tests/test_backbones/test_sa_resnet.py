import re

import pytest
import torch

from convattn_mm.models.backbones import SAResNet
from convattn_mm.models.encodings import QuadraticEncoding
from convattn_mm.models.layers import RelPosAttention
from .utils import (assert_grads_reach_all, check_cp_matches,
                    check_pretrained_prefix)


def small(depth=18, **kw):
    kw.setdefault('base_channels', 8)
    kw.setdefault('num_heads', 2)
    kw.setdefault('stem', 'cifar')
    return SAResNet(depth, **kw)


def test_arch():
    r18 = SAResNet(18)
    assert r18.stage_channels == (64, 128, 256, 512)
    assert r18.out_channels == (512, )  # out_indices=(3, )
    assert len(r18.res_layers) == 4
    assert [len(s) for s in r18.res_layers] == [2, 2, 2, 2]
    r50 = small(50)
    assert [len(s) for s in r50.res_layers] == [3, 4, 6, 3]
    assert r50.stage_channels == (32, 64, 128, 256)
    # every 3x3 conv is attention; 1x1 convs and the stem stay convs
    attn = [m for m in r18.modules() if isinstance(m, RelPosAttention)]
    assert len(attn) == 16
    convs3 = [m for m in r18.res_layers.modules()
              if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert not convs3


def test_bad_configs():
    with pytest.raises(KeyError, match=re.escape(
            'depth=34 is not supported; choose one of [18, 50]')):
        SAResNet(34)
    with pytest.raises(ValueError, match=re.escape(
            "stem='deep' is not supported; choose one of ['cifar', "
            "'imagenet']")):
        small(stem='deep')
    with pytest.raises(ValueError, match=re.escape(
            'out_indices=(0, 4): index 4 is out of range; allowed [-4, 3]')):
        small(out_indices=(0, 4))
    with pytest.raises(ValueError, match=re.escape(
            'frozen_stages=-2 is out of range')):
        small(frozen_stages=-2)
    with pytest.raises(ValueError, match=re.escape(
            "pos_encoding.type='RelativeBiasTable': conv_init=True needs "
            "'QuadraticEncoding' (or None)")):
        small(conv_init=True, pos_encoding=dict(type='RelativeBiasTable'))
    with pytest.raises(ValueError, match=re.escape(
            'num_heads=3 does not divide the stage width 8')):
        small(num_heads=3)


def test_structure():
    net = small(drop_path_rate=0.2)
    b = net.res_layers[1][0]
    assert b.conv1.attn.query_stride == (2, 2)
    assert b.conv1.attn.border == 'zeros' and b.conv1.attn.small_map == 'pad'
    assert b.conv2.attn.query_stride == (1, 1)
    assert b.downsample is not None and net.res_layers[0][0].downsample \
        is None
    assert net.res_layers[-1][-1].drop_path.drop_prob == pytest.approx(0.2)
    ci = small(conv_init=True, num_heads=4)
    enc = ci.res_layers[0][0].conv1.attn.pos_encoding
    assert isinstance(enc, QuadraticEncoding)
    assert enc.centres.tolist() == [[0, 0], [0, 1], [1, 0], [0, -1]]


@pytest.mark.parametrize('depth,size', [(18, (11, 13)), (18, (3, 3)),
                                        (50, (5, 4))])
def test_forward(depth, size):
    net = small(depth, out_indices=(0, 1, 2, 3),
                base_channels=8 if depth == 18 else 4)
    x = torch.randn(2, 3, *size)
    outs = net(x)
    h, w = size
    for i, (o, c) in enumerate(zip(outs, net.out_channels)):
        if i:
            h, w = -(-h // 2), -(-w // 2)
        assert o.shape == (2, c, h, w)
    assert_grads_reach_all(net, outs)


def test_imagenet_stem_shapes():
    net = small(stem='imagenet', out_indices=(0, 3))
    net.eval()
    outs = net(torch.randn(1, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(1, 8, 8, 8), (1, 64, 1, 1)]


def test_init_weights(tmp_path):
    net = small()
    net.init_weights()
    bn = net.res_layers[0][0].bn1
    assert torch.all(bn.weight == 1)
    check_pretrained_prefix(lambda cfg: small(init_cfg=cfg), tmp_path)


def test_frozen_stages_and_norm_eval():
    net = small(frozen_stages=1, norm_eval=True)
    net.train()
    assert all(not p.requires_grad for p in net.stem.parameters())
    assert all(not p.requires_grad for p in net.res_layers[0].parameters())
    assert all(p.requires_grad for p in net.res_layers[1].parameters())
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    plain = small(norm_eval=False)
    plain.train()
    assert all(m.training for m in plain.modules()
               if isinstance(m, torch.nn.BatchNorm2d))


def test_with_cp_matches_plain():
    # eval-mode BN statistics would differ between the two passes of
    # checkpointing in train mode; norm_eval keeps them fixed
    check_cp_matches(lambda cp: small(with_cp=cp, norm_eval=True),
                     torch.randn(2, 3, 8, 8))


def test_get_layer_depth():
    net = small()
    assert net.get_layer_depth('stem.0.weight') == (0, 10)
    assert net.get_layer_depth('res_layers.0.0.conv1.attn.qkv.weight') == (
        1, 10)
    assert net.get_layer_depth('res_layers.3.1.bn2.weight') == (8, 10)
    assert net.get_layer_depth('head.fc.bias', 'backbone.') == (9, 10)
