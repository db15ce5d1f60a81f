import re

import pytest
import torch
from mmengine.model import BaseModule

from convattn_mm.models.backbones import ConvAttnNet
from convattn_mm.models.encodings import QuadraticEncoding
from convattn_mm.models.layers import RelPosAttention
from .utils import (assert_grads_reach_all, check_cp_matches,
                    check_pretrained_prefix)

SMALL = dict(embed_dims=[8, 16, 16, 24], depths=[1, 1, 2, 1],
             num_heads=[2, 2, 4, 4], mixers=['conv', 'local', 'local',
                                             'global'], mlp_ratio=2.0)


def small(**kw):
    kw.setdefault('arch', SMALL)
    kw.setdefault('stem_stride', 2)
    kw.setdefault('kernel_sizes', [3, 3, 3, 3])
    return ConvAttnNet(**kw)


def test_arch():
    tiny = ConvAttnNet('tiny')
    n = sum(p.numel() for p in tiny.parameters())
    assert 26e6 < n < 30e6
    assert ConvAttnNet('t').embed_dims == [64, 128, 256, 512]
    demo = ConvAttnNet('demo')
    assert sum(p.numel() for p in demo.parameters()) < 1e6
    assert small().mixers == SMALL['mixers']
    net = small(mixers=['local', 'conv-init', 'global', 'conv'])
    assert net.mixers == ['local', 'conv-init', 'global', 'conv']


def test_bad_configs():
    with pytest.raises(KeyError, match=re.escape(
            "arch='huge' is not a preset; choose one of ['demo', 's', "
            "'small', 't', 'tiny']")):
        ConvAttnNet('huge')
    bad = dict(SMALL)
    del bad['mixers']
    with pytest.raises(KeyError, match=re.escape(
            "missing keys ['mixers'], unknown keys []; the keys are exactly "
            "['depths', 'embed_dims', 'mixers', 'mlp_ratio', 'num_heads']")):
        ConvAttnNet(bad)
    with pytest.raises(KeyError, match=re.escape(
            "missing keys [], unknown keys ['window']")):
        ConvAttnNet(dict(SMALL, window=7))
    with pytest.raises(ValueError, match=re.escape(
            "mixers[1]='attn' is not supported; choose one of ['conv', "
            "'conv-init', 'global', 'local']")):
        small(mixers=['conv', 'attn', 'local', 'local'])
    with pytest.raises(ValueError, match=re.escape(
            'out_indices=(4,): index 4 is out of range; allowed [-4, 3]')):
        small(out_indices=(4, ))
    with pytest.raises(ValueError, match=re.escape(
            'index -5 is out of range')):
        small(out_indices=[-5])
    with pytest.raises(ValueError, match=re.escape(
            'frozen_stages=5 is out of range; allowed -1 (none), 0 (stem) '
            '.. 4')):
        small(frozen_stages=5)
    with pytest.raises(ValueError, match=re.escape(
            "pos_encodings[0].type='Sinusoid' is not a position encoding; "
            "choose one of [")):
        small(pos_encodings=dict(type='Sinusoid'))
    with pytest.raises(ValueError, match=re.escape(
            'kernel_sizes[2]=4 must be an odd positive int')):
        small(kernel_sizes=[3, 3, 4, 3])
    with pytest.raises(ValueError, match=re.escape(
            "stem_stride=3 is not supported; choose one of [1, 2, 4]")):
        small(stem_stride=3)
    with pytest.raises(ValueError, match=re.escape(
            "pos_encodings[1].type='RelativeBiasTable': a 'conv-init' "
            "stage uses 'QuadraticEncoding'")):
        small(mixers=['conv', 'conv-init', 'local', 'local'],
              pos_encodings=[None, dict(type='RelativeBiasTable'), None,
                             None])


def test_out_indices_normalised():
    idx = [-1, 0]
    net = small(out_indices=idx)
    assert net.out_indices == (0, 3) and idx == [-1, 0]
    outs = net(torch.randn(1, 3, 16, 16))
    assert [o.shape[1] for o in outs] == [8, 24]


@pytest.mark.parametrize('size', [(32, 32), (17, 23), (5, 9), (2, 2)])
def test_forward(size):
    net = small(out_indices=(0, 1, 2, 3))
    x = torch.randn(2, 3, *size)
    outs = net(x)
    h, w = size
    for i, (o, c) in enumerate(zip(outs, SMALL['embed_dims'])):
        h, w = -(-h // 2), -(-w // 2)  # stem /2, then /2 per stage
        assert o.shape == (2, c, h, w)
        if i == 0:
            continue
    assert_grads_reach_all(net, outs)


def test_forward_every_mixer_and_encoding():
    net = small(mixers=['conv-init', 'local', 'global', 'conv-init'],
                dilations=[1, [1, 2], 1, 1],
                pos_encodings=[None, dict(type='QuadraticEncoding'),
                               dict(type='RelativeKeys'), None],
                out_indices=(0, 1, 2, 3))
    outs = net(torch.randn(2, 3, 20, 20))
    assert_grads_reach_all(net, outs)


def test_structure():
    net = small(drop_path_rate=0.3, dilations=[1, 1, [1, 2], 1],
                mixers=['conv', 'conv-init', 'local', 'global'])
    blocks = [b for s in net.stages for b in s.blocks]
    rates = [getattr(b.drop_path, 'drop_prob', 0.0) for b in blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3)
    assert rates == sorted(rates)
    stage2 = net.stages[2].blocks
    assert [b.mixer.dilation for b in stage2] == [(1, 1), (2, 2)]
    assert net.stages[3].blocks[0].mixer.kernel_size == ('global', 'global')
    assert isinstance(net.stages[1].blocks[0].mixer.pos_encoding,
                      QuadraticEncoding)
    assert net.stages[0].downsample is None
    assert net.stages[1].downsample.conv.stride == (2, 2)


def test_init_weights_conv_init_locality():
    """After init_weights a 'conv-init' head puts most of its attention on
    its own 3x3 offset (centre, 4-neighbours, ...)."""
    torch.manual_seed(0)
    net = small(mixers=['conv-init'] * 4, conv_init_mass=0.95,
                arch=dict(SMALL, num_heads=[4, 4, 4, 4]))
    net.init_weights()
    layer = net.stages[0].blocks[0].mixer
    assert isinstance(layer, RelPosAttention)
    centres = layer.pos_encoding.centres.detach()
    assert centres.tolist() == [[0, 0], [0, 1], [1, 0], [0, -1]]
    with layer.recording(queries=[(5, 5)]) as rec:
        net(torch.randn(1, 3, 20, 20))
    r = rec.records[0]
    for h in range(4):
        slot = (r['offsets'][0] == centres[h]).all(-1)
        assert r['weights'][0, h, 0][slot].item() > 0.85


def test_init_weights_pretrained_prefix(tmp_path):
    check_pretrained_prefix(lambda cfg: small(init_cfg=cfg), tmp_path)


def test_frozen_stages_and_norm_eval():
    net = small(frozen_stages=2, norm_eval=True, out_indices=(0, 1, 2, 3))
    net.train()
    for p in net.stem.parameters():
        assert not p.requires_grad
    for i in range(2):
        assert not net.stages[i].training
        assert all(not p.requires_grad for p in net.stages[i].parameters())
        assert all(not p.requires_grad for p in
                   getattr(net, f'norm{i}').parameters())
    assert net.stages[2].training
    assert all(p.requires_grad for p in net.stages[2].parameters())
    none = small(frozen_stages=-1)
    assert all(p.requires_grad for p in none.parameters())


def test_with_cp_matches_plain():
    check_cp_matches(
        lambda cp: small(with_cp=cp, drop_path_rate=0.0,
                         out_indices=(1, 3)), torch.randn(2, 3, 16, 16))


def test_get_layer_depth_and_lr_decay():
    from mmpretrain.engine.optimizers import \
        LearningRateDecayOptimWrapperConstructor
    net = small()
    n = sum(SMALL['depths'])
    assert net.get_layer_depth('backbone.stem.convs.0.weight',
                               'backbone.') == (0, n + 2)
    assert net.get_layer_depth('backbone.stages.0.blocks.0.mlp.fc1.weight',
                               'backbone.') == (1, n + 2)
    assert net.get_layer_depth('backbone.stages.2.downsample.conv.weight',
                               'backbone.') == (3, n + 2)
    assert net.get_layer_depth('backbone.stages.3.blocks.0.norm1.weight',
                               'backbone.') == (n, n + 2)
    assert net.get_layer_depth('backbone.norm3.weight',
                               'backbone.') == (n + 1, n + 2)
    assert net.get_layer_depth('head.fc.weight', 'backbone.') == (n + 1,
                                                                  n + 2)

    class Model(BaseModule):

        def __init__(self):
            super().__init__()
            self.backbone = net
            self.head = torch.nn.Linear(24, 10)

        def get_layer_depth(self, name):  # as mmpretrain's ImageClassifier
            return self.backbone.get_layer_depth(name, 'backbone.')

    cons = LearningRateDecayOptimWrapperConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.1)),
        dict(layer_decay_rate=0.5))
    wrapper = cons(Model())
    lrs = {g['lr'] for g in wrapper.optimizer.param_groups}
    assert max(lrs) == pytest.approx(1.0)
    assert min(lrs) == pytest.approx(0.5**(n + 1))
