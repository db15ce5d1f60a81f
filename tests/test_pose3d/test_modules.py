"""The 3-D pose modules on the base stack (no mmpose needed): causal
windows and streaming, shift-equivariance with border='mask', the
MotionBERT-layout backbone on long clips."""
import pytest
import torch

from convattn_mm.models import (MotionAttnNet, TemporalAttnNet,
                                TemporalAttnStream)
from convattn_mm.models.layers import RelPosAttention


def small_net(**kw):
    kw = dict(dict(embed_dims=32, depth=3, num_heads=4, kernel_size=3,
                   dilations=(1, 2, 4)), **kw)
    return TemporalAttnNet(34, **kw).eval()


@pytest.mark.parametrize('backend', ['reference', 'gather', 'fused_cpu'])
@pytest.mark.parametrize('border', ['mask', 'zeros'])
def test_causal_layer_ignores_later_frames(backend, border):
    """Frame t's output has no gradient from frames after t, and sees
    exactly the K past frames t, t-d, ..., t-(K-1)d."""
    layer = RelPosAttention(16, 2, kernel_size=3, dilation=2, border=border,
                            rank=1, causal=True, small_map='pad',
                            backend=backend,
                            pos_encoding=dict(type='RelativeBiasTable'))
    for T, t in ((20, 10), (3, 2)):
        x = torch.randn(1, T, 16, requires_grad=True)
        layer(x)[0, t].sum().backward()
        touched = (x.grad[0].abs().sum(-1) > 0).nonzero().flatten().tolist()
        assert touched == [s for s in (t - 4, t - 2, t) if s >= 0]


def test_causal_errors():
    with pytest.raises(ValueError, match="border='shift'"):
        RelPosAttention(16, 2, kernel_size=3, rank=1, causal=True)
    with pytest.raises(NotImplementedError, match='rank=2'):
        RelPosAttention(16, 2, kernel_size=3, border='mask', causal=True)


def test_causal_net_output_ignores_all_later_frames():
    net = small_net(causal=True, out_frames='all')
    x = torch.randn(2, 34, 40)
    (y, ) = net(x)
    for t in (0, 7, 25, 39):
        later = x.clone()
        later[:, :, t + 1:] = torch.randn_like(later[:, :, t + 1:]) * 5
        (y2, ) = net(later)
        torch.testing.assert_close(y2[:, :, :t + 1], y[:, :, :t + 1])
        if t < 39:  # the check can fail: later frames did change
            assert not torch.allclose(y2[:, :, t + 1:], y[:, :, t + 1:])
    # the target frame of a causal window is its last frame
    target = small_net(causal=True)
    target.load_state_dict(net.state_dict())
    torch.testing.assert_close(target(x[:, :, :27])[0], net(x[:, :, :27])[0]
                               [:, :, -1:])


def test_stream_matches_whole_sequence_at_constant_work():
    """Pushing frames one by one gives the causal net's outputs on the whole
    sequence, from a buffer of receptive_field frames."""
    net = small_net(causal=True, out_frames='all')
    assert net.receptive_field == 1 + 2 * (1 + 2 + 4)
    x = torch.randn(1, 34, 50)
    (full, ) = net(x)
    stream = TemporalAttnStream(net)
    outs = []
    for t in range(50):
        outs.append(stream.push(x[:, :, t]))
        assert len(stream.frames) == min(t + 1, net.receptive_field)
    torch.testing.assert_close(torch.stack(outs, -1), full, atol=1e-5,
                               rtol=1e-5)
    with pytest.raises(ValueError, match='causal'):
        TemporalAttnStream(small_net())


@pytest.mark.parametrize('shift', [1, 5])
def test_mask_border_shift_equivariance(shift):
    """With border='mask', shifting the input by s frames shifts every
    interior output (whose receptive field stays inside both inputs) by s;
    the border outputs differ."""
    net = small_net(border='mask', out_frames='all')
    half = (net.receptive_field - 1) // 2
    x = torch.randn(1, 34, 60)
    moved = torch.cat([torch.randn(1, 34, shift), x[:, :, :-shift]], 2)
    (y, ) = net(x)
    (y_moved, ) = net(moved)
    interior = slice(half, 60 - shift - half)
    inner = range(60)[interior]
    torch.testing.assert_close(
        y_moved[:, :, inner.start + shift:inner.stop + shift],
        y[:, :, interior], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(y_moved[:, :, shift], y[:, :, 0], atol=1e-3)


def test_motion_attn_net_runs_beyond_243_frames():
    net = MotionAttnNet(3, embed_dims=16, depth=2, num_heads=2,
                        kernel_size=9).eval()
    for T in (1, 27, 300):
        x = torch.randn(1, T, 17, 3)
        y = net(x)
        assert y.shape == (1, T, 17, 16)
        assert torch.isfinite(y).all()
    # relative in time: a clip's interior does not care where it starts
    x = torch.randn(1, 300, 17, 3)
    y = net(x)
    torch.testing.assert_close(net(x[:, 20:])[:, 60:200], y[:, 80:220],
                               atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r'\[B, T, 17, 3\]'):
        net(torch.randn(1, 5, 16, 3))
