"""Position encodings: equations, shared interface, table resizing."""
import math

import pytest
import torch

from convattn_mm.models.encodings import (LogCPB, QuadraticEncoding,
                                          RelativeBiasTable, RelativeKeys,
                                          RoPE, alpha_for_mass)
from convattn_mm.ops import window_table

GEOM = dict(num_heads=4, head_dims=8, rank=2, radius=(2, 2), step=(1, 1))


def test_bias_table_reads_offsets():
    enc = RelativeBiasTable(**GEOM)
    _, offsets = window_table((9, 9), 5, border='mask')
    bias = enc.pos_bias(offsets)
    assert bias.shape == (4, 25)
    torch.testing.assert_close(bias, enc.table.flatten(1))


def test_table_index_rounds_and_clamps():
    enc = RelativeBiasTable(num_heads=1, head_dims=4, rank=1, radius=(2, ),
                            step=(2, ))
    offsets = torch.tensor([[-9], [-4], [-2], [0], [1], [3], [4], [9]])
    assert enc.table_index(offsets).tolist() == [0, 0, 1, 2, 2, 4, 4, 4]


def test_quadratic_equation_and_mass():
    enc = QuadraticEncoding(**GEOM, init_kernel=3, init_mass=0.95)
    _, offsets = window_table((9, 9), 5, border='mask')
    bias = enc.pos_bias(offsets)
    alpha = enc.log_alpha.exp()
    diff = offsets[None].float() - enc.centres[:, None]
    torch.testing.assert_close(bias, -alpha[:, None] * (diff**2).sum(-1))
    # the stated bound: mass >= 1 - eps on the centre over the 3x3 grid
    grid = (offsets.abs() <= 1).all(-1)
    mass = bias[:, grid].softmax(-1).max(-1).values
    assert (mass >= 0.95 - 1e-6).all()
    assert alpha[0].item() == pytest.approx(alpha_for_mass(9, 0.05))
    # head h sits on the h-th grid offset
    assert enc.centres[:4].tolist() == [[-1, -1], [-1, 0], [-1, 1], [0, -1]]


def test_quadratic_full_covariance_is_positive_definite():
    enc = QuadraticEncoding(**GEOM, mode='full')
    with torch.no_grad():
        enc.chol.add_(torch.randn_like(enc.chol))
    eig = torch.linalg.eigvalsh(enc.precision())
    assert (eig >= -1e-6).all()


def test_alpha_for_mass_errors():
    with pytest.raises(ValueError, match=r'eps=1.5 must lie in \(0, 1\)'):
        alpha_for_mass(9, 1.5)
    assert alpha_for_mass(9, 0.1) == pytest.approx(math.log(8 * 0.9 / 0.1))


@pytest.mark.parametrize('mode', ['axial', 'mixed'])
@pytest.mark.parametrize('rank', [1, 2, 3])
def test_rope_is_relative(mode, rank):
    enc = RoPE(num_heads=2, head_dims=12, rank=rank, radius=(1, ) * rank,
               step=(1, ) * rank, mode=mode)
    q, k = torch.randn(1, 2, 1, 12), torch.randn(1, 2, 1, 12)
    p1 = torch.randn(1, rank) * 5
    shift = torch.randn(1, rank) * 5
    d = torch.randn(1, rank)

    def score(pq, pk):
        return (enc.rotate(q, pq) * enc.rotate(k, pk)).sum(-1)

    torch.testing.assert_close(score(p1, p1 + d),
                               score(p1 + shift, p1 + shift + d))
    assert not torch.allclose(score(p1, p1 + d), score(p1, p1))


def test_relative_keys_u_v_fold():
    """(q+u)ᵀ(k+r) + (v-u)ᵀr = qᵀk + qᵀr + uᵀk + vᵀr."""
    enc = RelativeKeys(**GEOM, scale=1.0)
    with torch.no_grad():
        enc.u.normal_()
        enc.v.normal_()
    _, offsets = window_table((9, 9), 5, border='mask')
    r = enc.rel_keys(offsets)[:, 7]  # [H, D]
    q, k = torch.randn(1, 4, 1, 8), torch.randn(1, 4, 1, 8)
    qs, _ = enc.transform_qk(q, k, None, None)
    got = (qs[0, :, 0] * (k[0, :, 0] + r)).sum(-1) + enc.pos_bias(offsets)[:,
                                                                          7]
    q0, k0 = q[0, :, 0], k[0, :, 0]
    want = ((q0 * k0).sum(-1) + (q0 * r).sum(-1) + (enc.u * k0).sum(-1) +
            (enc.v * r).sum(-1))
    torch.testing.assert_close(got, want)


def test_log_cpb_is_continuous_and_bounded():
    enc = LogCPB(**GEOM, hidden_dims=16)
    offsets = torch.tensor([[0, 0], [1, 0], [40, -40]])
    bias = enc.pos_bias(offsets)
    assert bias.shape == (4, 3)
    assert ((bias > 0) & (bias < 16)).all()


@pytest.mark.parametrize('cls,key', [(RelativeBiasTable, 'table'),
                                     (RelativeKeys, 'keys')])
def test_load_resizes_tables(cls, key, caplog):
    small = cls(num_heads=2, head_dims=4, rank=2, radius=(1, 1), step=(1, 1))
    big = cls(num_heads=2, head_dims=4, rank=2, radius=(3, 3), step=(1, 1))
    with torch.no_grad():
        getattr(small, key).fill_(0.5)
    from mmengine.logging import MMLogger
    MMLogger.get_instance('convattn_mm_test')
    big.load_state_dict(small.state_dict())
    new = getattr(big, key)
    assert new.shape[-2:] == (7, 7)
    torch.testing.assert_close(new, torch.full_like(new, 0.5))
