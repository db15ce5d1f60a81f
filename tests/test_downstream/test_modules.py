"""The downstream modules on the base stack (no mmdet / mmpose needed): the
1-D temporal and 3-D volume δ-attention blocks and networks."""
import pytest
import torch

from convattn_mm.models import (TemporalAttnBlock, TemporalAttnNet,
                                VolumeAttnBlock, VolumeAttnNet)
from convattn_mm.registry import MODELS


def test_registered_by_scope_name():
    for name in ('TemporalAttnBlock', 'TemporalAttnNet', 'VolumeAttnBlock',
                 'VolumeAttnNet'):
        assert MODELS.get(f'convattn_mm.{name}') is not None


def test_temporal_block_is_local_in_time():
    """With kernel 3, dilation 1 and one block, frame t depends on frames
    within 2 (attention window) and no further."""
    blk = TemporalAttnBlock(16, 2, kernel_size=3, border='mask').eval()
    x = torch.randn(1, 20, 16, requires_grad=True)
    blk(x)[0, 10].sum().backward()
    touched = (x.grad[0].abs().sum(-1) > 0).nonzero().flatten().tolist()
    assert touched == [9, 10, 11]


def test_temporal_net_shapes_and_target_frame():
    net = TemporalAttnNet(34, embed_dims=32, depth=2, num_heads=4).eval()
    x = torch.randn(2, 34, 27)
    (out, ) = net(x)
    assert out.shape == (2, 32, 1)
    # [B, K, C, T] is flattened to [B, K*C, T]
    torch.testing.assert_close(net(x.view(2, 17, 2, 27))[0], out)
    full = TemporalAttnNet(34, embed_dims=32, depth=2, num_heads=4,
                           out_frames='all').eval()
    full.load_state_dict(net.state_dict())
    (seq, ) = full(x)
    assert seq.shape == (2, 32, 27)
    torch.testing.assert_close(seq[:, :, 13:14], out)
    causal = TemporalAttnNet(34, embed_dims=32, depth=2, num_heads=4,
                             causal=True).eval()
    causal.load_state_dict(net.state_dict())
    # causal windows: the last frame's features differ from the
    # bidirectional net's (its past frames no longer see their future)
    assert causal(x)[0].shape == (2, 32, 1)
    assert not torch.allclose(causal(x)[0], seq[:, :, -1:])
    for frames in (1, 2, 243):  # any length
        assert net(torch.randn(1, 34, frames))[0].shape == (1, 32, 1)


def test_temporal_net_errors():
    with pytest.raises(ValueError, match="out_frames='last'"):
        TemporalAttnNet(34, out_frames='last')
    with pytest.raises(ValueError, match='dilations'):
        TemporalAttnNet(34, dilations=(1, 0))
    with pytest.raises(ValueError, match='depth'):
        TemporalAttnNet(34, depth=0)
    with pytest.raises(ValueError, match=r'expected \[B, 34, T\]'):
        TemporalAttnNet(34, embed_dims=16, num_heads=2)(torch.randn(1, 30, 9))


def test_volume_block_window_and_gradients():
    blk = VolumeAttnBlock(8, 2, kernel_size=3, border='mask').eval()
    x = torch.randn(1, 7, 7, 7, 8, requires_grad=True)
    blk(x)[0, 3, 3, 3].sum().backward()
    touched = (x.grad[0].abs().sum(-1) > 0).nonzero()
    assert touched.min(0).values.tolist() == [2, 2, 2]
    assert touched.max(0).values.tolist() == [4, 4, 4]


def test_volume_net_shapes_and_errors():
    net = VolumeAttnNet(embed_dims=(8, 16), depths=(1, 1), num_heads=(2, 2),
                        out_indices=(0, -1))
    outs = net(torch.randn(1, 3, 5, 16, 24))
    assert [tuple(o.shape) for o in outs] == [(1, 8, 5, 4, 6),
                                             (1, 16, 5, 2, 3)]
    sum(o.sum() for o in outs).backward()
    assert all(p.grad is not None for p in net.parameters())
    with pytest.raises(ValueError, match='out_indices'):
        VolumeAttnNet(out_indices=(2, ))
    with pytest.raises(ValueError, match='stages'):
        VolumeAttnNet(embed_dims=(8, 16), depths=(1, ), num_heads=(2, 2))
    with pytest.raises(ValueError, match=r'\[B, C, D, H, W\]'):
        net(torch.randn(1, 3, 16, 16))
