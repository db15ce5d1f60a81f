"""Loading that refuses wrong weights: a Pretrained init without a
checkpoint fails at build time, one whose keys do not fit the backbone fails
at load time (naming the prefixes and the fix), and a converted layer loads
its convolution's own keys."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.runner.checkpoint import save_checkpoint

from convattn_mm.convert import conv_to_attention
from convattn_mm.models import ConvAttnNet, SAResNet
from convattn_mm.models.checks import MIN_MATCHED
from convattn_mm.models.layers import ConvAttention

TINY = dict(embed_dims=[8, 16, 16, 16], depths=[1, 1, 1, 1],
            num_heads=[1, 2, 2, 2], mixers=['conv', 'local', 'local',
                                            'global'], mlp_ratio=2.0)


def torchvision_resnet18_keys():
    """A torchvision-layout ResNet-18 state dict (mmpretrain's ResNet is
    torchvision's module for module) plus its fc."""
    from mmpretrain.models.backbones import ResNet
    sd = ResNet(18, base_channels=8, stem_channels=8).state_dict()
    sd['fc.weight'], sd['fc.bias'] = torch.zeros(10, 64), torch.zeros(10)
    return sd


def test_saresnet_refuses_a_resnet_checkpoint(tmp_path):
    """The measured case: SAResNet(init_cfg=Pretrained(resnet18.pth)) on a
    torchvision file matched no key and trained from random weights."""
    path = tmp_path / 'resnet18.pth'
    torch.save(torchvision_resnet18_keys(), path)
    net = SAResNet(18, base_channels=8, num_heads=2,
                   init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(ValueError) as err:
        net.init_weights()
    msg = str(err.value)
    assert 'matches 0 of' in msg
    assert 'Missing: res_layers.0' in msg and 'stem.0' in msg
    assert 'Unexpected: bn1' in msg and 'conv1' in msg and 'layer1.0' in msg
    assert 'tools/misc/resnet_to_saresnet.py' in msg


def test_classifier_checkpoint_without_prefix_names_the_prefix(tmp_path):
    src = ConvAttnNet(TINY)
    path = tmp_path / 'cls.pth'
    save_checkpoint(dict(state_dict={'backbone.' + k: v for k, v in
                                     src.state_dict().items()}), str(path))
    bad = ConvAttnNet(TINY, init_cfg=dict(type='Pretrained',
                                          checkpoint=str(path)))
    with pytest.raises(ValueError, match="set prefix='backbone.'"):
        bad.init_weights()
    good = ConvAttnNet(TINY, init_cfg=dict(type='Pretrained',
                                           checkpoint=str(path),
                                           prefix='backbone.'))
    good.init_weights()  # mmengine's prefix loading still works
    for k, v in src.state_dict().items():
        assert torch.equal(good.state_dict()[k], v), k


def test_partial_checkpoint_above_threshold_loads():
    src = ConvAttnNet(TINY).state_dict()
    keys = list(src)
    keep = keys[:int(len(keys) * (MIN_MATCHED + 0.1)) + 1]
    net = ConvAttnNet(TINY)
    net.load_state_dict({k: src[k] for k in keep}, strict=False)
    drop = keys[:int(len(keys) * (MIN_MATCHED - 0.1))]
    with pytest.raises(ValueError, match='needs 50%'):
        net.load_state_dict({k: src[k] for k in drop}, strict=False)


@pytest.mark.parametrize('checkpoint, match', [
    (None, 'model.backbone.init_cfg.checkpoint='),
    ('', 'none is set'),
    ('work_dirs/pretrained/missing.pth', 'is not a file'),
])
def test_pretrained_without_a_file_fails_at_build(checkpoint, match):
    cfg = dict(type='Pretrained', checkpoint=checkpoint)
    with pytest.raises(ValueError, match=match):
        SAResNet(18, base_channels=8, num_heads=2, init_cfg=cfg)
    with pytest.raises(ValueError, match='model.backbone.init_cfg=None'):
        ConvAttnNet(TINY, init_cfg=[dict(type='Kaiming', layer='Conv2d'),
                                    cfg])


@pytest.mark.parametrize('groups, bias', [(1, True), (2, False), (8, True)])
def test_converted_layer_loads_the_conv_keys(groups, bias):
    """A freshly built exact layer (random proj, table) given a conv's
    state dict computes that conv; a wrong shape is a ValueError."""
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=groups, bias=bias)
    layer = conv_to_attention(nn.Conv2d(8, 16, 3, stride=2, padding=1,
                                        groups=groups, bias=bias))
    with torch.no_grad():  # forget the conversion: random weights
        layer.proj.weight.normal_()
        layer.pos_encoding.table.normal_()
    layer.load_state_dict(conv.state_dict(), strict=True)
    assert layer.is_hard_conv
    x = torch.randn(2, 8, 9, 11)
    torch.testing.assert_close(layer(x), conv(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match='does not fit this layer'):
        layer.load_state_dict({'weight': torch.zeros(16, 8, 5, 5)})
    soft = ConvAttention(8, 9, out_dims=16, qk_dims=4, kernel_size=3,
                         pos_encoding=dict(type='QuadraticEncoding'))
    table = {k: v.clone() for k, v in soft.state_dict().items()
             if 'pos_encoding' in k}
    soft.load_state_dict(nn.Conv2d(8, 16, 3, padding=1).state_dict(),
                         strict=False)
    for k, v in table.items():  # a soft layer keeps its own encoding
        assert torch.equal(soft.state_dict()[k], v)
    assert F is not None
