"""Key padding (per-sample valid lengths) on rank-1 maps."""
import pytest
import torch

from convattn_mm.models.layers import RelPosAttention
from convattn_mm.ops import make_window
from convattn_mm.ops.key_padding import (KEY_PADDING_BACKENDS,
                                         padded_attention_bhnd)
from convattn_mm.ops.reference import reference_attention

LENGTHS = [13, 7, 4]
N = 13


def _qkv(seed=0, B=3, H=2, D=4):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, N, D, generator=g, dtype=torch.float64)
            for _ in range(3)]


def _tables(spec, H=2, D=4):
    g = torch.Generator().manual_seed(1)
    T = spec.table_shape[0]
    return (torch.randn(H, T, generator=g, dtype=torch.float64),
            torch.randn(H, T, D, generator=g, dtype=torch.float64))


@pytest.mark.parametrize('backend', KEY_PADDING_BACKENDS)
@pytest.mark.parametrize('kernel,border,stride', [(5, 'mask', 1),
                                                  (3, 'mask', 2),
                                                  ('global', 'shift', 1)])
def test_padding_equals_shorter_map(backend, kernel, border, stride):
    """Each sample's valid outputs equal the reference run on its own
    length, and do not depend on what the padding holds."""
    q, k, v = _qkv()
    spec = make_window((N, ), kernel, 1, border, stride)
    bias, rel = _tables(spec)
    lengths = torch.tensor(LENGTHS)
    out = padded_attention_bhnd(q, k, v, spec, 0.5, lengths, bias, rel,
                                backend)
    # change the padding: the valid outputs stay
    q2, k2, v2 = (t.clone() for t in (q, k, v))
    for b, L in enumerate(LENGTHS):
        for t in (q2, k2, v2):
            t[b, :, L:] = 1e3 * torch.randn_like(t[b, :, L:])
    out2 = padded_attention_bhnd(q2, k2, v2, spec, 0.5, lengths, bias, rel,
                                 backend)
    for b, L in enumerate(LENGTHS):
        nq = -(-L // stride)
        assert (out[b, :, nq:] == 0).all()
        torch.testing.assert_close(out2[b, :, :nq], out[b, :, :nq],
                                   atol=1e-6, rtol=0)
        if kernel != 'global' and L < (kernel - 1) + 1:
            continue  # the window does not fit the short map alone
        spec_b = make_window((L, ), kernel, 1, border, stride)
        # the same offsets index the same table entries: cut the table
        off, off_b = spec.table_offsets()[:, 0], spec_b.table_offsets()[:, 0]
        sel = [int((off == o).nonzero()) for o in off_b]
        alone = reference_attention(q[b:b + 1, :, :L], k[b:b + 1, :, :L],
                                    v[b:b + 1, :, :L], spec_b, 0.5,
                                    bias[:, sel], rel[:, sel])
        torch.testing.assert_close(out[b:b + 1, :, :nq], alone, atol=1e-10,
                                   rtol=0)


def test_gradients_finite_and_padding_free():
    q, k, v = (t.requires_grad_() for t in _qkv())
    spec = make_window((N, ), 3, 1, 'mask')
    out = padded_attention_bhnd(q, k, v, spec, 0.5, torch.tensor(LENGTHS))
    out.sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
        for b, L in enumerate(LENGTHS):
            assert (t.grad[b, :, L:] == 0).all()


@pytest.mark.parametrize('backend', ['fused_cpu', 'natten', 'flex'])
def test_other_backends_refuse(backend):
    q, k, v = _qkv()
    spec = make_window((N, ), 3, 1, 'mask')
    with pytest.raises(NotImplementedError, match='key-padding'):
        padded_attention_bhnd(q, k, v, spec, 0.5, torch.tensor(LENGTHS),
                              backend=backend)


@pytest.mark.parametrize('border', ['shift', 'zeros'])
def test_borders_refused(border):
    q, k, v = _qkv()
    spec = make_window((N, ), 3, 1, border)
    with pytest.raises(NotImplementedError, match=f'border={border!r}'):
        padded_attention_bhnd(q, k, v, spec, 0.5, torch.tensor(LENGTHS))


def test_bad_lengths():
    q, k, v = _qkv()
    spec = make_window((N, ), 3, 1, 'mask')
    with pytest.raises(ValueError, match=r'key_lengths=\[0, 7, 4\]'):
        padded_attention_bhnd(q, k, v, spec, 0.5, torch.tensor([0, 7, 4]))
    with pytest.raises(ValueError, match='shape'):
        padded_attention_bhnd(q, k, v, spec, 0.5, torch.tensor([3, 4]))


@pytest.mark.parametrize('pos_encoding', [
    dict(type='RoPE'), dict(type='LogCPB'), dict(type='RelativeBiasTable')
])
@pytest.mark.parametrize('kernel', [5, 'global'])
def test_layer_padding_independent(pos_encoding, kernel):
    """RelPosAttention with key_lengths: valid outputs equal the layer run
    on each sample alone (same weights)."""
    torch.manual_seed(0)
    layer = RelPosAttention(16, 2, kernel_size=kernel, border='mask',
                            pos_encoding=pos_encoding, rank=1).double()
    x = torch.randn(3, N, 16, dtype=torch.float64)
    # lengths the 5-window fits (a shorter map alone would shrink the
    # window to the whole axis: small_map='shrink')
    lengths = [13, 7, 5]
    out = layer(x, key_lengths=torch.tensor(lengths))
    for b, L in enumerate(lengths):
        alone = layer(x[b:b + 1, :L])
        torch.testing.assert_close(out[b:b + 1, :L], alone, atol=1e-6,
                                   rtol=0)


def test_layer_rank2_refuses():
    layer = RelPosAttention(8, 2, kernel_size=3, border='mask', rank=2)
    with pytest.raises(NotImplementedError, match='rank 1'):
        layer(torch.randn(2, 5, 5, 8), key_lengths=torch.tensor([3, 5]))
