"""The functional op: every backend against the brute-force reference."""
import itertools
import warnings

import pytest
import torch

from convattn_mm.ops import (BACKENDS, backend_support, make_window, na1d,
                             na2d, na3d, neighborhood_attention, window_table)

SIZES = {1: (11, ), 2: (9, 10), 3: (7, 6, 5)}
# dilated 3-D windows need a larger map than SIZES[3] (shift: K * d <= L;
# mask and zeros: (K - 1) * d + 1 <= L)
DILATED_3D = (7, 10, 6)
KERNELS = {1: [3, 5, 'global'], 2: [3, (3, 5), 'global'],
           3: [3, (3, 5, 3), 'global']}


def _inputs(spatial, table_shape, dtype=torch.float64, heads=2, d=4, dv=3,
            batch=2, grad=False):
    q = torch.randn(batch, *spatial, heads, d, dtype=dtype)
    k = torch.randn_like(q)
    v = torch.randn(batch, *spatial, heads, dv, dtype=dtype)
    pb = torch.randn(heads, *table_shape, dtype=dtype)
    rk = torch.randn(heads, *table_shape, d, dtype=dtype) * 0.5
    ts = (q, k, v, pb, rk)
    return [t.requires_grad_(grad) for t in ts]


def _sweep():
    """Every rank x border x kernel x dilation x stride; a global window
    ignores the dilation, so d > 1 would only repeat d = 1."""
    for rank in (1, 2, 3):
        for border, K, d, s in itertools.product(('shift', 'mask', 'zeros'),
                                                 KERNELS[rank], (1, 2),
                                                 (1, 2)):
            if K != 'global' or d == 1:
                yield rank, border, K, d, s


def _size(rank, d):
    return DILATED_3D if rank == 3 and d > 1 else SIZES[rank]


# (rank, spatial, border, K, d, s): every case of the sweep, each on a map it
# fits (no case is skipped: one that does not fit fails the tests)
CASES = [(rank, _size(rank, d), border, K, d, s)
         for rank, border, K, d, s in _sweep()]
CASE_IDS = [
    f'{r}d-{"x".join(map(str, sp))}-{b}-K'
    f'{"x".join(map(str, K)) if isinstance(K, tuple) else K}-d{d}-s{s}'
    for r, sp, b, K, d, s in CASES
]

# The sweep's windows that do not fit the default maps (SIZES), listed, each
# with the error it must raise; the cases above run them on DILATED_3D.
INVALID_ON_SIZES = [
    (3, 'shift', 3, 2, r'\(3 \* 2 > 5\)'),
    (3, 'shift', (3, 5, 3), 2, r'\(5 \* 2 > 6\)'),
    (3, 'mask', (3, 5, 3), 2, r"border='mask' needs .* \(9 > 6\)"),
    (3, 'zeros', (3, 5, 3), 2, r"border='zeros' needs .* \(9 > 6\)"),
]


@pytest.mark.parametrize('s', [1, 2])
@pytest.mark.parametrize('rank,border,K,d,match', INVALID_ON_SIZES)
def test_sweep_windows_that_do_not_fit_raise(rank, border, K, d, match, s):
    with pytest.raises(ValueError, match=match):
        window_table(SIZES[rank], K, d, border)
    with pytest.raises(ValueError, match=match):
        make_window(SIZES[rank], K, d, border, s)


def test_sweep_drops_nothing_silently():
    """The listed invalid windows are exactly those that do not fit SIZES;
    all of them run in CASES on DILATED_3D."""
    failing = set()
    for rank, border, K, d, s in _sweep():
        try:
            make_window(SIZES[rank], K, d, border, s)
        except ValueError:
            failing.add((rank, border, K, d))
    assert failing == {c[:4] for c in INVALID_ON_SIZES}
    on_big = {(r, b, K, d) for r, sp, b, K, d, s in CASES if sp == DILATED_3D}
    assert failing <= on_big
    assert len(CASES) == len(list(_sweep()))


@pytest.mark.parametrize('terms', ['none', 'bias', 'rel_keys', 'both'])
@pytest.mark.parametrize('backend', ['gather', 'fused_cpu'])
@pytest.mark.parametrize('rank,spatial,border,K,d,s', CASES, ids=CASE_IDS)
def test_backend_matches_reference(backend, terms, rank, spatial, border, K,
                                   d, s):
    tshape, _ = window_table(spatial, K, d, border)
    q, k, v, pb, rk = _inputs(spatial, tshape, grad=True)
    pb = pb if terms in ('bias', 'both') else None
    rk = rk if terms in ('rel_keys', 'both') else None
    leaves = [t for t in (q, k, v, pb, rk) if t is not None]
    outs = []
    for b in ('reference', backend):
        o = neighborhood_attention(q, k, v, K, d, border, s, pb, rk,
                                   backend=b)
        weight = torch.linspace(-1, 1, o.numel(), dtype=o.dtype)
        grads = torch.autograd.grad((o.flatten() * weight).sum(), leaves)
        outs.append((o, ) + grads)
    expected_shape = (2, *(-(-L // s) for L in spatial), 2, 3)
    assert outs[0][0].shape == expected_shape
    for ref, got in zip(*outs):
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-10)


@pytest.mark.slow  # one torch.compile per case
@pytest.mark.parametrize('rank,spatial,border,K,d,s', CASES[::3],
                         ids=CASE_IDS[::3])
def test_flex_forward_matches_reference(rank, spatial, border, K, d, s):
    tshape, _ = window_table(spatial, K, d, border)
    q, k, v, pb, rk = _inputs(spatial, tshape, dtype=torch.float32, d=8,
                              dv=8)
    ref = neighborhood_attention(q, k, v, K, d, border, s, pb, rk,
                                 backend='reference')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        got = neighborhood_attention(q, k, v, K, d, border, s, pb, rk,
                                     backend='flex')
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('backend', ['gather', 'fused_cpu'])
@pytest.mark.parametrize('border', ['shift', 'mask', 'zeros'])
def test_gradcheck(backend, border):
    spatial = (5, 6)
    tshape, _ = window_table(spatial, 3, 1, border)
    ts = _inputs(spatial, tshape, heads=2, d=3, dv=2, batch=1, grad=True)

    def fn(q, k, v, pb, rk):
        return neighborhood_attention(q, k, v, 3, 1, border, (1, 2), pb, rk,
                                      backend=backend)

    assert torch.autograd.gradcheck(fn, ts, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize('rank', [1, 2, 3])
def test_window_equal_to_map_is_global(rank):
    spatial = {1: (7, ), 2: (5, 7), 3: (3, 5, 3)}[rank]
    q, k, v, _, _ = _inputs(spatial, (1, ))
    full = neighborhood_attention(q, k, v, spatial, border='shift')
    glob = neighborhood_attention(q, k, v, 'global', border='mask')
    dense = torch.softmax(
        torch.einsum('bqhd,bkhd->bhqk', q.flatten(1, rank), k.flatten(1, rank))
        * 4**-0.5, -1)
    expect = torch.einsum('bhqk,bkhd->bqhd', dense, v.flatten(1, rank))
    torch.testing.assert_close(full, glob)
    torch.testing.assert_close(full.flatten(1, rank), expect)


@pytest.mark.parametrize('spatial', [(6, 8), (7, 4)])
@pytest.mark.parametrize('border', ['shift', 'mask', 'zeros'])
def test_global_covers_even_maps_for_any_border(spatial, border):
    q, k, v, _, _ = _inputs(spatial, (1, ))
    out = neighborhood_attention(q, k, v, 'global', border=border)
    ref = neighborhood_attention(q, k, v, 'global', border=border,
                                 backend='reference')
    torch.testing.assert_close(out, ref)
    assert window_table(spatial, 'global')[0] == tuple(2 * L - 1
                                                       for L in spatial)


@pytest.mark.parametrize('rank,K,d', [
    (r, K, d) for r in (1, 2, 3) for K in (3, 5, (3, 5)) for d in (1, 2)
    if not (isinstance(K, tuple) and r == 1)
])
def test_shift_border_equals_natten(rank, K, d):
    natten = pytest.importorskip('natten')
    if isinstance(K, tuple) and rank == 3:
        K = (3, 5, 3)
    spatial = {1: (13, ), 2: (11, 12), 3: (7, 11, 10)}[rank]
    if any(k * d > L for k, L in zip(
            K if isinstance(K, tuple) else (K, ) * rank, spatial)):
        spatial = tuple(L + 4 for L in spatial)
    q = torch.randn(2, *spatial, 2, 8)
    k, v = torch.randn_like(q), torch.randn_like(q)
    fn = {1: natten.na1d, 2: natten.na2d, 3: natten.na3d}[rank]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        theirs = fn(q, k, v, kernel_size=K, dilation=d)
    ours = neighborhood_attention(q, k, v, K, d, 'shift')
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_bfloat16_autocast_close_to_float32():
    """Documented tolerance: |bf16 - fp32| <= 0.05 on unit-scale inputs."""
    spatial = (12, 12)
    tshape, _ = window_table(spatial, 5)
    q, k, v, pb, _ = _inputs(spatial, tshape, dtype=torch.float32, d=16,
                             dv=16)
    ref = neighborhood_attention(q, k, v, 5, pos_bias=pb)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = neighborhood_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(),
                                     5, pos_bias=pb.bfloat16())
    assert got.dtype == torch.bfloat16
    assert (got.float() - ref).abs().max() < 0.05


def test_conv_like_one_hot_bias_is_exact():
    """-inf everywhere but one offset: the output is the value there."""
    spatial = (6, 7)
    tshape, offsets = window_table(spatial, 3, border='zeros')
    pb = torch.full((2, *tshape), float('-inf'))
    pb[0, 0, 2] = 0  # head 0 looks at δ = (-1, +1)
    pb[1, 1, 1] = 0  # head 1 looks at δ = (0, 0)
    q = torch.randn(1, *spatial, 2, 4)
    k, v = torch.randn_like(q), torch.randn_like(q)
    for backend in ('fused_cpu', 'gather', 'reference'):
        out = neighborhood_attention(q, k, v, 3, border='zeros', pos_bias=pb,
                                     backend=backend)
        torch.testing.assert_close(out[:, :, :, 1], v[:, :, :, 1], rtol=0,
                                   atol=0)
        shifted = torch.zeros_like(v[:, :, :, 0])
        shifted[:, 1:, :-1] = v[:, :-1, 1:, 0]
        torch.testing.assert_close(out[:, :, :, 0], shifted, rtol=0, atol=0)


def test_per_rank_wrappers_check_rank():
    q = torch.randn(1, 5, 5, 2, 4)
    assert na2d(q, q, q, 3).shape == q.shape
    with pytest.raises(ValueError, match='na1d expects a 4-D tensor'):
        na1d(q, q, q, 3)
    with pytest.raises(ValueError, match='na3d expects a 6-D tensor'):
        na3d(q, q, q, 3)


@pytest.mark.parametrize('kwargs,exc,match', [
    (dict(kernel_size=4), ValueError, r'kernel_size=4: window sizes must be '
     r'odd \(got 4 on axis 0\)'),
    (dict(kernel_size=0), ValueError, r'kernel_size=0: each entry must be a '
     r"positive int or 'global'"),
    (dict(kernel_size=7, dilation=2), ValueError, r'does not fit the map '
     r'\(6, 7\) on axis 0: the shift border needs kernel_size \* dilation'),
    (dict(kernel_size=9, border='mask'), ValueError, r"border='mask' needs "
     r'\(kernel_size - 1\) \* dilation \+ 1 <= size \(9 > 6\)'),
    (dict(kernel_size=(3, 3, 3)), ValueError, r'kernel_size=\(3, 3, 3\) has '
     r'3 entries, expected 2'),
    (dict(kernel_size=3, border='reflect'), ValueError, r"border='reflect' is "
     r"not supported; choose one of \['mask', 'shift', 'zeros'\]"),
    (dict(kernel_size=3, backend='cuda'), ValueError, r"backend='cuda' is not "
     r"supported; choose one of \['flex', 'fused_cpu', 'gather', 'natten', "
     r"'reference', 'auto'\]"),
    (dict(kernel_size=3, query_stride=0), ValueError, r'query_stride=0'),
    (dict(kernel_size=3, dilation=1.5), TypeError, r'dilation=1.5'),
    (dict(kernel_size=3, pos_bias=torch.zeros(2, 3, 3)), ValueError,
     r'pos_bias.shape=\(2, 3, 3\): expected \[heads, \*table_shape\] = '
     r'\(2, 5, 5\)'),
    (dict(kernel_size=3, rel_keys=torch.zeros(2, 5, 5)), ValueError,
     r'rel_keys.shape=\(2, 5, 5\): expected'),
])
def test_bad_arguments(kwargs, exc, match):
    q = torch.randn(1, 6, 7, 2, 4)
    with pytest.raises(exc, match=match):
        neighborhood_attention(q, q, q, **kwargs)


def test_bad_tensors():
    q = torch.randn(1, 6, 7, 2, 4)
    with pytest.raises(ValueError, match=r'key.shape=\(1, 6, 6, 2, 4\) must '
                       r'equal query.shape=\(1, 6, 7, 2, 4\)'):
        neighborhood_attention(q, q[:, :, :6], q, 3)
    with pytest.raises(ValueError, match=r'value.shape=\(1, 6, 7, 3, 4\) must '
                       r'match'):
        neighborhood_attention(q, q, torch.randn(1, 6, 7, 3, 4), 3)
    with pytest.raises(ValueError, match=r'query.shape=\(6, 7\): expected '
                       r'\[B, \*spatial, heads, head_dim\]'):
        neighborhood_attention(q[0, :, :, 0, 0], q[0, :, :, 0, 0],
                               q[0, :, :, 0, 0], 3)
    with pytest.raises(ValueError, match='key is torch.float64'):
        neighborhood_attention(q, q.double(), q, 3)
    with pytest.raises(TypeError, match='query must be a torch.Tensor'):
        neighborhood_attention([1], q, q, 3)


@pytest.mark.parametrize('kwargs,match', [
    (dict(border='mask'), r"backend='natten' cannot run this call: "
     r"border='mask': NATTEN only has the 'shift' border"),
    (dict(query_stride=2), r'query_stride > 1: NATTEN has no query stride'),
    (dict(pos_bias=torch.zeros(2, 5, 5)), r'pos_bias: NATTEN'),
])
def test_forced_backend_that_cannot_run(kwargs, match):
    pytest.importorskip('natten')
    q = torch.randn(1, 6, 7, 2, 4)
    with pytest.raises(NotImplementedError, match=match):
        neighborhood_attention(q, q, q, 3, backend='natten', **kwargs)


def test_training_backends_on_cpu():
    q = torch.randn(1, 6, 7, 2, 4, requires_grad=True)
    with pytest.raises(NotImplementedError,
                       match='FlexAttention does not support backward on CPU'):
        neighborhood_attention(q, q, q, 3, backend='flex')
    spec = make_window((6, 7), 3)
    support = backend_support(spec, dict(device='cpu', dtype=torch.float32,
                                         training=True, pos_bias=True,
                                         rel_keys=False))
    probe = support.reasons
    assert support.plan.backend == 'fused_cpu'
    assert probe['fused_cpu'] is None and probe['gather'] is None
    assert probe['flex'] is not None and probe['natten'] is not None
    assert set(probe) == set(BACKENDS)


@pytest.mark.parametrize('d,dv', [(16, 16), (32, 32), (64, 64), (32, 16),
                                  (16, 5)])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('border,K,s', [('shift', 5, 1), ('zeros', 3, 2),
                                        ('mask', 5, 1), ('shift', 'global',
                                                         1)])
def test_specialised_head_dims(d, dv, dtype, border, K, s):
    """The kernel's head-dim-specialised (and vectorised) paths."""
    spatial = (9, 10)
    tshape, _ = window_table(spatial, K, 1, border)
    q, k, v, pb, rk = _inputs(spatial, tshape, dtype=dtype, d=d, dv=dv,
                              grad=True)
    leaves = (q, k, v, pb, rk)
    outs = []
    for b in ('reference', 'fused_cpu'):
        o = neighborhood_attention(q, k, v, K, 1, border, s, pb, rk,
                                   backend=b)
        weight = torch.linspace(-1, 1, o.numel(), dtype=o.dtype)
        outs.append((o, ) + torch.autograd.grad((o.flatten() * weight).sum(),
                                                leaves))
    tol = dict(rtol=1e-9, atol=1e-10) if dtype == torch.float64 else dict(
        rtol=1e-4, atol=1e-5)
    for ref, got in zip(*outs):
        torch.testing.assert_close(got, ref, **tol)
