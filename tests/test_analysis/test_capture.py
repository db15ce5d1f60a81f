"""capture_attention: layer selection, query mapping, exactness, no residue."""
import pytest
import torch
import torch.nn as nn

from convattn_mm.analysis import (attention_layers, capture_attention,
                                  pixel_to_grid, select_layers)
from convattn_mm.models.layers import (ConvAttention, GatedConvAttention,
                                       RelPosAttention)


class TwoStage(nn.Module):
    """image -> stride-2 tokens -> local attention -> strided attention."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.a = RelPosAttention(8, 2, kernel_size=3, border='mask')
        self.b = RelPosAttention(8, 2, kernel_size=3, query_stride=2,
                                 border='zeros')

    def forward(self, x):
        x = self.stem(x).permute(0, 2, 3, 1)
        return self.b(self.a(x))


def test_select_layers():
    model = TwoStage()
    assert [n for n, _ in attention_layers(model)] == ['a', 'b']
    assert [n for n, _ in select_layers(model, 'b')] == ['b']
    assert [n for n, _ in select_layers(model, ['*'])] == ['a', 'b']
    assert [n for n, _ in select_layers(model, [-1])] == ['b']
    with pytest.raises(ValueError, match=r"pattern 'c\*' matches no.*'a'"):
        select_layers(model, 'c*')
    with pytest.raises(ValueError, match='no RelPosAttention'):
        select_layers(nn.Linear(2, 2))
    with pytest.raises(TypeError, match='layers entry'):
        select_layers(model, [1.5])


def test_no_residue_and_same_output():
    model = TwoStage().eval()
    x = torch.randn(2, 3, 16, 16)
    ref = model(x)
    with capture_attention(model, queries=2) as cap:
        out = model(x)
    torch.testing.assert_close(out, ref)
    assert len(cap.records['a']) == 1
    for m in model.modules():
        assert not m._forward_pre_hooks
        if isinstance(m, RelPosAttention):
            assert m._recorder is None
    model(x)  # nothing recorded outside the context
    assert len(cap.records['a']) == 1


def test_pixel_queries_map_to_each_grid():
    assert pixel_to_grid((5, 9), (16, 16), (8, 8)) == (2, 4)
    assert pixel_to_grid((5, 9), (16, 16), (8, 8), query_stride=2) == (1, 2)
    assert pixel_to_grid((15, 15), (16, 16), (3, 3)) == (2, 2)
    with pytest.raises(ValueError, match='outside the image'):
        pixel_to_grid((16, 0), (16, 16), (8, 8))
    model = TwoStage()
    with capture_attention(model, queries=[(5, 9), (0, 15)]) as cap:
        model(torch.randn(3, 3, 16, 16))
    a, b = cap.merged('a'), cap.merged('b')
    assert a.weights.shape[:2] == (6, 2) and b.weights.shape[:2] == (6, 2)
    # positions in each layer's input map, image-major rows
    assert a.query_pos[:2].tolist() == [[2, 4], [0, 7]]
    assert b.query_pos[:2].tolist() == [[2, 4], [0, 6]]
    assert a.image_index.tolist() == [0, 0, 1, 1, 2, 2]
    torch.testing.assert_close(a.query_pixel()[:2],
                               torch.tensor([[4., 8.], [0., 14.]]))
    # a second forward keeps counting images
    with capture_attention(model, queries={'a': 1}, layers='a') as cap:
        model(torch.randn(1, 3, 16, 16))
        model(torch.randn(2, 3, 16, 16))
    rec = cap.merged('a')
    assert rec.query_pos.tolist() == [[4, 4]] * 3
    assert rec.image_index.tolist() == [0, 1, 2]
    with pytest.raises(TypeError, match='queries='):
        with capture_attention(model, queries='all'):
            model(torch.randn(1, 3, 16, 16))


def test_images_of_other_sizes_do_not_merge():
    model = TwoStage()
    with capture_attention(model, layers='a') as cap:
        model(torch.randn(1, 3, 16, 16))
        model(torch.randn(1, 3, 12, 12))
    with pytest.raises(ValueError, match='merge captures of one input'):
        cap.merged('a')
    with pytest.raises(KeyError, match="'b' was not captured"):
        cap.merged('b')


def _replay(layer, rec, x):
    """Output of a ConvAttention from captured weights:
    y_q = proj(concat_h Σ_j a_hqj x_{key_j}) (zero-padded keys are 0)."""
    tokens = x.movedim(1, -1)
    B, C = tokens.shape[0], tokens.shape[-1]
    flat = torch.cat([tokens.reshape(B, -1, C), tokens.new_zeros(B, 1, C)],
                     1)
    keys = rec.keys.clone()
    keys[keys < 0] = flat.shape[1] - 1
    R, H, Kw = rec.weights.shape
    b = rec.image_index
    vals = flat[b[:, None], keys]  # [R, Kw, C]
    mixed = torch.einsum('rhk,rkc->rhc', rec.weights, vals).reshape(R, H * C)
    return layer.proj(mixed)


@pytest.mark.parametrize('gated', [False, True])
def test_captured_weights_reproduce_the_output(gated):
    """Weights recorded for every query reproduce the layer's output, so
    they are the attention the layer applied (the gated layer's content
    branch included)."""
    cls = GatedConvAttention if gated else ConvAttention
    kwargs = dict(gate_init=0.6) if gated else {}
    layer = cls(4, 9, out_dims=6, qk_dims=3, kernel_size=3, query_stride=2,
                pos_encoding=dict(type='RelativeBiasTable'), **kwargs)
    with torch.no_grad():
        layer.pos_encoding.table.normal_(0, 1)
        layer.qk.weight.normal_(0, 1)
    x = torch.randn(2, 4, 7, 8)
    with capture_attention(layer) as cap:
        y = layer(x)
    rec = cap.merged('')
    want = y.movedim(1, -1).reshape(-1, 6)
    torch.testing.assert_close(_replay(layer, rec, x), want, atol=1e-5,
                               rtol=1e-5)
