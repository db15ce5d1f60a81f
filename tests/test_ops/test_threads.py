"""The C++ kernel at the thread counts users run, against the reference.

The kernel splits its work over ``torch.get_num_threads()`` threads: the
forward over (batch, 64-query chunk, head) items, the backward over
(batch, head) items. The suite's default is one thread (conftest), so these
tests ask for the ``num_threads`` fixture (2 and 3 threads, restored after).
Shapes are chosen so that ``B * heads`` and the number of queries divide by
neither 2 nor 3, and several maps span more than one 64-query chunk with a
partial last chunk. Every case checks the output and the gradient of every
input (q, k, v, bias table, relative keys) against the dense reference,
computed in float64 from the same inputs.
"""
import pytest
import torch

from convattn_mm.ops import neighborhood_attention, window_table
from convattn_mm.ops import fused_cpu

pytestmark = pytest.mark.skipif(
    fused_cpu.unavailable_reason() is not None,
    reason=f'C++ kernel unavailable: {fused_cpu.unavailable_reason()}')

# rank, map, kernel, dilation, border, query stride, (batch, heads)
GEOMETRY = [
    (1, (301, ), 5, 3, 'shift', 1, (1, 5)),  # 5 chunks of 64 queries
    (1, (70, ), 7, 1, 'zeros', 2, (5, 5)),  # 35 strided queries
    (2, (17, 17), 5, 2, 'mask', 1, (1, 5)),  # 289 queries
    (2, (11, 13), (3, 5), 1, 'zeros', 1, (1, 7)),
    (3, (7, 7, 7), 3, 2, 'shift', 1, (1, 5)),  # dilated 3-D shift
    (3, (5, 5, 7), (3, 3, 5), 1, 'mask', 1, (5, 1)),
]
GEOMETRY_IDS = [f'{g[0]}d-{g[4]}-{"x".join(map(str, g[1]))}'
                for g in GEOMETRY]

# dtype, head_dim, value dim: which kernel instantiation runs
PATHS = [
    (torch.float64, 4, 3),  # generic double
    (torch.float64, 16, 16),  # head-dim-specialised double
    (torch.float32, 6, 5),  # generic float (vectorised exp)
    (torch.float32, 16, 16),  # AVX-512 float (when the CPU has it)
    (torch.float32, 32, 64),  # AVX-512 float, 2 and 4 registers per row
]
PATH_IDS = ['f64-generic', 'f64-d16', 'f32-generic', 'f32-d16', 'f32-d32v64']


def _compare(rank, spatial, K, d, border, s, bh, dtype, hd, vd, terms):
    B, H = bh
    tshape, _ = window_table(spatial, K, d, border)
    q = torch.randn(B, *spatial, H, hd, dtype=dtype)
    k = torch.randn_like(q)
    v = torch.randn(B, *spatial, H, vd, dtype=dtype)
    pb = torch.randn(H, *tshape, dtype=dtype) if 'bias' in terms else None
    rk = torch.randn(H, *tshape, hd, dtype=dtype) * 0.5 \
        if 'rel_keys' in terms else None
    inputs = [t for t in (q, k, v, pb, rk) if t is not None]
    results = []
    for backend, cast in (('fused_cpu', dtype), ('reference',
                                                 torch.float64)):
        leaves = [t.detach().to(cast).requires_grad_() for t in inputs]
        args = iter(leaves)
        qq, kk, vv = next(args), next(args), next(args)
        bb = next(args) if pb is not None else None
        rr = next(args) if rk is not None else None
        out = neighborhood_attention(qq, kk, vv, K, d, border, s, bb, rr,
                                     backend=backend)
        weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype)
        grads = torch.autograd.grad((out.flatten() * weight).sum(), leaves)
        results.append([out.detach(), *grads])
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    names = ['out', 'dq', 'dk', 'dv'] + (['dbias'] if pb is not None else
                                         []) + (['drel_keys']
                                                if rk is not None else [])
    for name, got, ref in zip(names, *results):
        assert got.dtype == dtype
        err = (got.double() - ref).abs().max().item()
        bound = tol * max(1.0, ref.abs().max().item())
        assert err <= bound, f'{name}: max error {err:.3g} > {bound:.3g}'


@pytest.mark.parametrize('dtype,hd,vd', PATHS, ids=PATH_IDS)
@pytest.mark.parametrize('rank,spatial,K,d,border,s,bh', GEOMETRY,
                         ids=GEOMETRY_IDS)
def test_threads_match_reference(num_threads, rank, spatial, K, d, border, s,
                                  bh, dtype, hd, vd):
    assert bh[0] * bh[1] % num_threads and \
        len(range(0, spatial[-1], s)) * int(torch.tensor(spatial[:-1]).prod(
        )) % num_threads, 'the shapes must not split evenly'
    _compare(rank, spatial, K, d, border, s, bh, dtype, hd, vd,
             ('bias', 'rel_keys'))


@pytest.mark.parametrize('dtype,hd,vd', [PATHS[0], PATHS[3]],
                         ids=[PATH_IDS[0], PATH_IDS[3]])
@pytest.mark.parametrize('rank,spatial,K,d,border,s,bh', GEOMETRY[::2],
                         ids=GEOMETRY_IDS[::2])
def test_threads_without_position_terms(num_threads, rank, spatial, K, d,
                                        border, s, bh, dtype, hd, vd):
    _compare(rank, spatial, K, d, border, s, bh, dtype, hd, vd, ())


def test_fixture_restores_the_thread_count():
    """Runs after the parametrised tests above (file order): the suite's
    one-thread default is back."""
    assert torch.get_num_threads() == 1
