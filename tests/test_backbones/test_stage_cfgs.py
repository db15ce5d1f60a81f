"""Per-stage / per-block config dicts of every backbone (merged over the
defaults the other arguments give) and the versioned state-dict loading."""
import re
from collections import OrderedDict

import pytest
import torch

from convattn_mm.models.backbones import (ConvAttnNet, IsotropicAttnNet,
                                          SAResNet, TemporalAttnNet,
                                          VolumeAttnNet)
from convattn_mm.models.backbones._utils import merge_cfgs, merge_stage_cfgs


def _convattn(**kw):
    return ConvAttnNet('demo', stem_stride=2, **kw)


def _saresnet(**kw):
    return SAResNet(18, stem='cifar', base_channels=16, num_heads=4, **kw)


def _isotropic(**kw):
    return IsotropicAttnNet(num_layers=2, embed_dims=36, num_heads=9, **kw)


def _temporal(**kw):
    return TemporalAttnNet(34, 32, depth=3, num_heads=4, **kw)


def _volume(**kw):
    return VolumeAttnNet(**kw)


def test_merge_cfgs_broadcasts_one_dict_and_takes_one_per_item():
    defaults = [dict(a=1, b=2), dict(a=3, b=4)]
    assert merge_cfgs(defaults, None, ('a', 'b'), 'c') == defaults
    assert merge_cfgs(defaults, dict(b=0), ('a', 'b'), 'c') == [
        dict(a=1, b=0), dict(a=3, b=0)]
    assert merge_cfgs(defaults, [{}, dict(a=9)], ('a', 'b'), 'c') == [
        dict(a=1, b=2), dict(a=9, b=4)]
    with pytest.raises(ValueError, match=re.escape(
            'c has 3 entries; expected one dict for all or one per entry '
            '(2)')):
        merge_cfgs(defaults, [{}, {}, {}], ('a', 'b'), 'c')
    with pytest.raises(TypeError, match=re.escape("c[1]=3 must be a dict")):
        merge_cfgs(defaults, [{}, 3], ('a', 'b'), 'c')


def test_merge_stage_cfgs_applies_stage_then_block_dicts():
    defaults = [[dict(k=1, d=1)] * 2, [dict(k=1, d=1)]]
    got = merge_stage_cfgs(
        defaults, [dict(k=3, block_cfgs=[{}, dict(d=2)]), {}], ('d', 'k'))
    assert got == [[dict(k=3, d=1), dict(k=3, d=2)], [dict(k=1, d=1)]]
    with pytest.raises(ValueError, match=re.escape(
            "stage_cfgs[0].block_cfgs[1]: unknown key 'x'; allowed keys "
            "['d', 'k']")):
        merge_stage_cfgs(defaults, dict(block_cfgs=[{}, dict(x=1)]),
                         ('d', 'k'))


def test_convattn_net_stage_and_block_cfgs_reach_the_blocks():
    net = _convattn(stage_cfgs=[
        {}, dict(block_cfgs=dict(dilation=2)),
        dict(num_heads=2, block_cfgs=[dict(kernel_size=5), {}]),
        dict(mixer='conv-init', pos_encoding=dict(type='QuadraticEncoding',
                                                 init_mass=0.8))])
    assert net.stages[1].blocks[0].mixer.dilation == (2, 2)
    s2 = net.stages[2].blocks
    assert [b.mixer.num_heads for b in s2] == [2, 2]
    assert [b.mixer.kernel_size for b in s2] == [(5, 5), (7, 7)]
    last = net.stages[3].blocks[0]
    assert last.mixer_type == 'conv-init'
    assert type(last.mixer.pos_encoding).__name__ == 'QuadraticEncoding'
    assert net.stages[0].blocks[0].mixer_type == 'conv'
    out = net(torch.randn(1, 3, 32, 32))
    assert out[0].shape == (1, 96, 2, 2)


def test_convattn_net_broadcast_encoding_follows_the_merged_mixer():
    """``pos_encodings`` given once is for the attention blocks: a block
    made 'conv-init' by ``stage_cfgs`` keeps its QuadraticEncoding, and an
    arch 'conv-init' stage made 'local' gets the broadcast encoding."""
    net = _convattn(mixers=['conv', 'conv-init', 'local', 'global'],
                    stage_cfgs=[{}, dict(mixer='local'), {},
                                dict(mixer='conv-init')])
    kinds = [type(s.blocks[0].mixer.pos_encoding).__name__
             for s in net.stages[1:]]
    assert kinds == ['RelativeBiasTable', 'RelativeBiasTable',
                     'QuadraticEncoding']
    with pytest.raises(ValueError, match=re.escape(
            "pos_encoding.type='RelativeBiasTable': mixer='conv-init' needs "
            "'QuadraticEncoding' (or None)")):
        _convattn(stage_cfgs=[{}, {}, {}, dict(
            mixer='conv-init', pos_encoding=dict(type='RelativeBiasTable'))])


def test_saresnet_stage_cfgs_choose_the_attention_per_stage():
    net = _saresnet(stage_cfgs=[{}, {}, {}, dict(conv_init=True,
                                                 kernel_size=5)],
                    out_indices=(2, 3))
    assert not net.res_layers[2][0].conv1.conv_init
    last = net.res_layers[3][1].conv2
    assert last.conv_init and last.attn.kernel_size == (5, 5)
    assert type(last.attn.pos_encoding).__name__ == 'QuadraticEncoding'
    outs = net(torch.randn(1, 3, 16, 16))
    assert [o.shape[1] for o in outs] == [64, 128]
    with pytest.raises(ValueError, match=re.escape(
            "pos_encoding.type='RelativeBiasTable': conv_init=True needs "
            "'QuadraticEncoding' (or None)")):
        _saresnet(stage_cfgs=dict(conv_init=True,
                                  pos_encoding=dict(type='RelativeBiasTable')))


def test_isotropic_and_temporal_per_layer_cfgs():
    net = _isotropic(layer_cfgs=[dict(pos_encoding='learned'), {}])
    assert [l.quadratic_init for l in net.layers] == [False, True]
    assert net(torch.randn(1, 3, 8, 8))[0].shape == (1, 36, 4, 4)
    net = _temporal(block_cfgs=[dict(border='mask'), {}, dict(dilation=5)])
    assert [b.attn.border for b in net.blocks] == ['mask', 'shift', 'shift']
    assert [b.attn.dilation for b in net.blocks] == [(1, ), (3, ), (5, )]
    assert net(torch.randn(2, 34, 27))[0].shape == (2, 32, 1)


def test_volume_stage_cfgs():
    net = _volume(stage_cfgs=[dict(kernel_size=(1, 3, 3)), {}])
    assert net.stages[0][0].attn.kernel_size == (1, 3, 3)
    assert net.stages[1][0].attn.kernel_size == (3, 7, 7)
    assert net(torch.randn(1, 3, 3, 16, 16))[0].shape == (1, 64, 3, 2, 2)


@pytest.mark.parametrize('build,kw,key,allowed', [
    (_convattn, dict(stage_cfgs=dict(window=3)), 'stage_cfgs[0]',
     ['attn_drop', 'backend', 'block_cfgs']),
    (_convattn, dict(stage_cfgs=dict(dims=8)), 'stage_cfgs[0]',
     ['attn_drop', 'backend', 'block_cfgs']),
    (_saresnet, dict(stage_cfgs=[{}, dict(block_cfgs=dict(heads=2)), {},
                                 {}]), 'stage_cfgs[1].block_cfgs[0]',
     ['backend', 'conv_init', 'init_mass']),
    (_isotropic, dict(layer_cfgs=dict(ffn=4)), 'layer_cfgs[0]',
     ['backend', 'dilation', 'drop']),
    (_temporal, dict(block_cfgs=dict(causal=True)), 'block_cfgs[0]',
     ['backend', 'border', 'dilation']),
    (_volume, dict(stage_cfgs=dict(depth=2)), 'stage_cfgs[0]',
     ['backend', 'block_cfgs', 'border']),
])
def test_unknown_keys_are_named_with_the_allowed_ones(build, kw, key,
                                                      allowed):
    with pytest.raises(ValueError) as e:
        build(**kw)
    msg = str(e.value)
    assert msg.startswith(f'{key}: unknown key ')
    assert "allowed keys ['" + "', '".join(allowed) in msg


BUILDERS = [_convattn, _saresnet, _isotropic, _temporal, _volume]


@pytest.mark.parametrize('build', BUILDERS)
def test_unversioned_state_dict_loads(build):
    """A state dict without version metadata (as written before
    ``_version`` existed, or rebuilt key by key) loads as version 1."""
    torch.manual_seed(0)
    src, dst = build(), build()
    old = OrderedDict((k, v.clone()) for k, v in src.state_dict().items())
    assert not hasattr(old, '_metadata')
    dst.load_state_dict(old)
    for k, v in dst.state_dict().items():
        torch.testing.assert_close(v, old[k])


@pytest.mark.parametrize('build', BUILDERS)
def test_state_dict_records_the_version_and_refuses_newer(build):
    net = build()
    state = net.state_dict()
    assert state._metadata['']['version'] == type(net)._version == 1
    state._metadata['']['version'] = 2
    with pytest.raises(ValueError, match=re.escape(
            f'{type(net).__name__} checkpoint version 2 is newer than this '
            f"code's (1)")):
        net.load_state_dict(state)


def test_an_older_version_is_upgraded_before_loading():
    """The mechanism a layout change will use: a subclass at version 2 that
    renamed a key reads a version-1 state dict through its upgrade."""

    class Renamed(TemporalAttnNet):
        _version = 2

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.final_norm = self.norm
            del self.norm

        def _upgrade_state_dict(self, state_dict, prefix, version):
            for k in [k for k in state_dict if k.startswith(prefix + 'norm.')]:
                state_dict[prefix + 'final_' + k[len(prefix):]] = \
                    state_dict.pop(k)

    old = _temporal()
    with torch.no_grad():
        old.norm.weight.normal_()
    new = Renamed(34, 32, depth=3, num_heads=4)
    wrapped = torch.nn.ModuleDict(dict(backbone=old)).state_dict()
    assert wrapped._metadata['backbone']['version'] == 1
    torch.nn.ModuleDict(dict(backbone=new)).load_state_dict(wrapped)
    torch.testing.assert_close(new.final_norm.weight, old.norm.weight)
    # today's own state dicts load without an upgrade
    new.load_state_dict(new.state_dict())
