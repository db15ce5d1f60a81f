import re

import pytest
import torch

from convattn_mm.models.backbones import IsotropicAttnNet
from convattn_mm.models.encodings import QuadraticEncoding, RelativeBiasTable
from .utils import (assert_grads_reach_all, check_cp_matches,
                    check_pretrained_prefix)


def small(**kw):
    kw.setdefault('num_layers', 3)
    kw.setdefault('embed_dims', 36)
    kw.setdefault('ffn_dims', 48)
    return IsotropicAttnNet(**kw)


def test_arch():
    net = IsotropicAttnNet()
    assert len(net.layers) == 6
    attn = net.layers[0].attn
    assert (attn.num_heads, attn.head_dims, attn.embed_dims) == (9, 44, 400)
    assert attn.kernel_size == ('global', 'global')
    assert net.layers[0].ffn.fc1.out_features == 512
    assert isinstance(attn.pos_encoding, QuadraticEncoding)
    # the 9 heads start on the 9 offsets of the 3x3 grid
    centres = {tuple(c) for c in attn.pos_encoding.centres.tolist()}
    assert centres == {(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)}
    learned = small(pos_encoding='learned')
    assert isinstance(learned.layers[0].attn.pos_encoding, RelativeBiasTable)
    assert net.embed.in_features == 12  # 2x2 space-to-depth of RGB


def test_bad_configs():
    with pytest.raises(ValueError, match=re.escape(
            "pos_encoding='sinusoid' is not supported; choose one of "
            "['learned', 'quadratic']")):
        small(pos_encoding='sinusoid')
    with pytest.raises(ValueError, match=re.escape(
            'out_indices=(3,): index 3 is out of range; allowed [-3, 2]')):
        small(out_indices=(3, ))
    with pytest.raises(ValueError, match=re.escape(
            'frozen_stages=4 is out of range')):
        small(frozen_stages=4)
    with pytest.raises(ValueError, match=re.escape(
            'the 2×2 space-to-depth needs even H and W')):
        small()(torch.randn(1, 3, 7, 8))


@pytest.mark.parametrize('size', [(16, 16), (6, 10), (2, 2)])
@pytest.mark.parametrize('encoding', ['quadratic', 'learned'])
def test_forward(size, encoding):
    net = small(pos_encoding=encoding, out_indices=(0, -1))
    outs = net(torch.randn(2, 3, *size))
    assert [tuple(o.shape) for o in outs] == [
        (2, 36, size[0] // 2, size[1] // 2)] * 2
    assert_grads_reach_all(net, outs)


def test_local_window_and_pre_norm():
    net = small(kernel_size=3, pre_norm=True)
    outs = net(torch.randn(1, 3, 12, 12))
    assert outs[0].shape == (1, 36, 6, 6)
    assert net.layers[0].attn.kernel_size == (3, 3)


def test_init_weights(tmp_path):
    net = small()
    net.init_weights()
    centres = net.layers[1].attn.pos_encoding.centres
    assert centres[0].tolist() == [0, 0] and centres[1].tolist() == [0, 1]
    check_pretrained_prefix(lambda cfg: small(init_cfg=cfg), tmp_path)


def test_frozen_stages():
    net = small(frozen_stages=2)
    net.train()
    assert all(not p.requires_grad for p in net.embed.parameters())
    assert not net.layers[1].training
    assert all(not p.requires_grad for p in net.layers[1].parameters())
    assert all(p.requires_grad for p in net.layers[2].parameters())


def test_with_cp_matches_plain():
    check_cp_matches(lambda cp: small(with_cp=cp), torch.randn(2, 3, 8, 8))


def test_get_layer_depth():
    net = small()
    assert net.get_layer_depth('embed.weight') == (0, 5)
    assert net.get_layer_depth('layers.2.ffn.fc1.weight') == (3, 5)
    assert net.get_layer_depth('head.fc.weight', 'backbone.') == (4, 5)


def test_dilation_reaches_every_layer():
    net = small(kernel_size=3, dilation=(1, 7), pos_encoding='learned')
    assert all(layer.attn.dilation == (1, 7) for layer in net.layers)
    spec, _ = net.layers[0].attn.window((4, 40))
    # one window along the width: offsets -7, 0, 7 around an interior query
    nbr, _ = spec.neighbors()
    q = 2 * 40 + 20
    assert sorted({int(k) % 40 - 20 for k in nbr[q]}) == [-7, 0, 7]
    assert net(torch.randn(1, 3, 8, 80))[0].shape == (1, 36, 4, 40)
    with pytest.raises(ValueError, match=re.escape(
            'dilation=0: each entry must be a positive int')):
        small(kernel_size=3, dilation=0)
