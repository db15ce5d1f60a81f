"""Measures on layers whose answer is known."""
import itertools
import math

import pytest
import torch
import torch.nn as nn

from convattn_mm.analysis import (capture_attention, conv_distance,
                                  content_dependence, effective_kernel,
                                  head_measures, mean_attention_distance,
                                  mean_kernel)
from convattn_mm.models.layers import RelPosAttention


def one_hot_layer(offsets, kernel_size=3, dilation=1, border='zeros',
                  channels=4):
    """A conv-converted-like layer: head h attends only to offsets[h]
    (bias table -inf elsewhere, q/k zeroed)."""
    heads = len(offsets)
    layer = RelPosAttention(channels * heads, heads, head_dims=channels,
                            kernel_size=kernel_size, dilation=dilation,
                            border=border,
                            pos_encoding=dict(type='RelativeBiasTable'))
    enc = layer.pos_encoding
    with torch.no_grad():
        zero_qk(layer)
        enc.table.fill_(float('-inf'))
        table_offsets = layer.window((16, 16))[0].table_offsets()
        for h, d in enumerate(offsets):
            t = (table_offsets == torch.tensor(d)).all(-1).nonzero()[0, 0]
            enc.table.view(heads, -1)[h, t] = 0
    return layer


def zero_qk(layer):
    inner = layer.num_heads * layer.head_dims
    layer.qkv.weight[:2 * inner].zero_()
    layer.qkv.bias[:2 * inner].zero_()


class Downsample(nn.Module):
    """NCHW image -> NHWC tokens at stride 2 (a 2x2 average pool)."""

    def __init__(self, channels, attn):
        super().__init__()
        self.lift = nn.Conv2d(3, channels, 1)
        self.attn = attn

    def forward(self, x):
        x = nn.functional.avg_pool2d(self.lift(x), 2)
        return self.attn(x.permute(0, 2, 3, 1))


CONV_OFFSETS = [(0, 0), (0, 1), (1, 0), (-1, -1), (1, -1)]


@pytest.mark.parametrize('dilation', [1, 2])
def test_conv_like_layer(dilation):
    offsets = [(a * dilation, b * dilation) for a, b in CONV_OFFSETS]
    model = Downsample(4 * len(offsets),
                       one_hot_layer(offsets, dilation=dilation))
    with capture_attention(model) as cap:
        model(torch.randn(2, 3, 16, 16))
    assert cap.image_size == (16, 16)
    rec = cap.merged('attn')
    assert rec.stride == (2.0, 2.0)
    m = head_measures(rec)
    expect = torch.tensor([math.hypot(*d) * 2 for d in offsets])
    torch.testing.assert_close(m['mean_distance'], expect)
    torch.testing.assert_close(m['content_dependence'], torch.zeros(5))
    torch.testing.assert_close(m['conv_distance'], torch.zeros(5))
    torch.testing.assert_close(m['peak_mass'], torch.ones(5))
    torch.testing.assert_close(m['peak_offset'], 2.0 * torch.tensor(
        offsets, dtype=torch.float))
    # one-hot effective kernel, equal to the plain mean kernel
    torch.testing.assert_close(m['effective_kernel'], m['mean_kernel'])
    assert (m['effective_kernel'].flatten(1).sum(-1) - 1).abs().max() < 1e-6


def test_converted_conv_is_a_convolution():
    convert = pytest.importorskip('convattn_mm.convert')
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)
    layer = convert.conv_to_attention(conv, init='exact')
    with capture_attention(layer) as cap:
        layer(torch.randn(2, 3, 9, 9))
    m = cap.measures()['']
    # 9 heads, head h on the h-th offset of the 3x3 grid (row-major);
    # the layer's own map is the image here (stride 1)
    expect = torch.tensor([math.hypot(a, b) for a, b in
                           itertools.product((-1, 0, 1), repeat=2)])
    torch.testing.assert_close(m['mean_distance'], expect)
    assert m['content_dependence'].abs().max() < 1e-6
    assert m['conv_distance'].abs().max() < 1e-6


@pytest.mark.parametrize('border', ['shift', 'mask', 'zeros'])
def test_position_only_head_is_a_convolution(border):
    layer = RelPosAttention(8, 4, kernel_size=5, border=border,
                            pos_encoding=dict(type='RelativeBiasTable'))
    with torch.no_grad():
        zero_qk(layer)
        layer.pos_encoding.table.normal_(0, 2)
    with capture_attention(layer, image_size=(9, 11)) as cap:
        layer(torch.randn(3, 9, 11, 8))
    rec = cap.merged('')
    assert content_dependence(rec).abs().max() < 1e-6
    assert conv_distance(rec).abs().max() < 1e-5
    # the fitted kernel is the softmax of the table over the offsets
    k = effective_kernel(rec).flatten(1)
    t = layer.pos_encoding.table.detach().flatten(1)
    seen = mean_kernel(rec).flatten(1) > 0
    want = torch.where(seen, t, torch.full_like(t, -float('inf'))).softmax(-1)
    torch.testing.assert_close(k, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize('border', ['shift', 'mask', 'zeros'])
def test_content_head_scores_high(border):
    layer = RelPosAttention(8, 4, kernel_size=5, border=border)
    with torch.no_grad():
        layer.qkv.weight.mul_(20)
    with capture_attention(layer, image_size=(9, 11)) as cap:
        layer(torch.randn(3, 9, 11, 8))
    m = cap.measures()['']
    assert (m['content_dependence'] > 0.9).all()
    assert (m['conv_distance'] > 0.5).all()


def test_uniform_global_attention_mean_distance():
    L, S = 5, 2
    layer = RelPosAttention(8, 2, kernel_size='global')
    with torch.no_grad():
        zero_qk(layer)
    with capture_attention(layer, image_size=(L * S, L * S)) as cap:
        layer(torch.randn(2, L, L, 8))
    rec = cap.merged('')
    # analytic: mean over all (query, key) pairs of the pixel distance
    pts = torch.tensor(list(itertools.product(range(L), repeat=2)),
                       dtype=torch.float) * S
    analytic = torch.cdist(pts, pts).mean()
    torch.testing.assert_close(mean_attention_distance(rec),
                               analytic.expand(2), rtol=1e-5, atol=1e-5)
    # uniform attention: constant weights -> nothing for content to explain
    torch.testing.assert_close(content_dependence(rec), torch.zeros(2))
    assert conv_distance(rec).abs().max() < 1e-6


def test_mixed_head_in_between():
    """A head with a position term plus a moderate content term lies
    strictly between a convolution and a content head."""
    layer = RelPosAttention(8, 2, kernel_size=5, border='zeros',
                            pos_encoding=dict(type='RelativeBiasTable'))
    with torch.no_grad():
        layer.pos_encoding.table.normal_(0, 2)
        layer.qkv.weight.mul_(3)
    with capture_attention(layer, image_size=(9, 9)) as cap:
        layer(torch.randn(4, 9, 9, 8))
    m = cap.measures()['']
    assert ((m['content_dependence'] > 0.01) &
            (m['content_dependence'] < 0.99)).all()
    assert ((m['conv_distance'] > 0.01) & (m['conv_distance'] < 0.9)).all()
