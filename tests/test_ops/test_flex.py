"""The compiled flex backend on the CPU (forward): equal to the reference,
linear in memory, never eager, bf16 autocast. Each distinct call signature
costs one torch.compile (seconds), so the default suite keeps a few and the
full sweep is marked slow."""
import math
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

from convattn_mm.models.layers import RelPosAttention
from convattn_mm.ops import make_window
from convattn_mm.ops import flex as flex_mod
from convattn_mm.ops.reference import reference_attention

pytestmark = pytest.mark.skipif(
    flex_mod.unavailable_reason('cpu') is not None,
    reason=str(flex_mod.unavailable_reason('cpu')))

MAPS = {1: (37, ), 2: (9, 11), 3: (5, 6, 7)}


def _compare(rank, border, K, d, s, terms='both', heads=2, dim=8, dv=5):
    spec = make_window(MAPS[rank], K, d, border, s)
    n, T = math.prod(spec.in_shape), math.prod(spec.table_shape)
    g = torch.Generator().manual_seed(rank * 7 + len(border))
    q, k = (torch.randn(2, heads, n, dim, generator=g) for _ in range(2))
    v = torch.randn(2, heads, n, dv, generator=g)
    bias = torch.randn(heads, T, generator=g) if terms != 'none' else None
    rel = torch.randn(heads, T, dim, generator=g) * 0.5 \
        if terms == 'both' else None
    with warnings.catch_warnings():
        # eager flex warns: make that a failure
        warnings.filterwarnings('error', message='.*without torch.compile')
        got = flex_mod.flex_attention_op(q, k, v, spec, 0.3, bias, rel)
    ref = reference_attention(q, k, v, spec, 0.3, bias, rel)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('border,K,d,s', [('shift', 5, 1, 1),
                                          ('mask', 3, 2, 1),
                                          ('zeros', 3, 1, 2)])
def test_compiled_flex_matches_reference(border, K, d, s):
    """Rank 2, bias + relative keys, each border (with dilation / stride)."""
    _compare(2, border, K, d, s)


@pytest.mark.slow
@pytest.mark.parametrize('terms', ['none', 'bias', 'both'])
@pytest.mark.parametrize('border', ['shift', 'mask', 'zeros'])
@pytest.mark.parametrize('rank', [1, 2, 3])
def test_compiled_flex_sweep(rank, border, terms):
    _compare(rank, border, 3, 2 if rank == 1 else 1, 1, terms)
    _compare(rank, border, 'global' if border == 'shift' else 3, 1, 2, terms)


@pytest.mark.slow
@pytest.mark.parametrize('enc', ['RelativeBiasTable', 'QuadraticEncoding',
                                 'RelativeKeys', 'RoPE', 'LogCPB', None])
@pytest.mark.parametrize('border', ['shift', 'mask', 'zeros'])
def test_every_encoding_through_flex(enc, border):
    layer = RelPosAttention(16, 2, kernel_size=3, border=border,
                            pos_encoding=enc and dict(type=enc)).eval()
    x = torch.randn(1, 9, 11, 16)
    with torch.no_grad():
        ref = layer(x)
        layer.backend = 'flex'
        got = layer(x)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # a second compile when run alone
def test_sizes_in_one_bucket_share_a_compiled_function():
    """Map sizes are padded to whole tiles (8 x 16 in 2-D), so 9x11 and
    10x13 reuse the kernel compiled for 9x11 (mask border, K=3, bias)."""
    _compare(2, 'mask', 3, 1, 1, terms='bias')
    before = flex_mod.compile_count
    old = MAPS[2]
    try:
        MAPS[2] = (10, 13)
        _compare(2, 'mask', 3, 1, 1, terms='bias')
    finally:
        MAPS[2] = old
    assert flex_mod.compile_count == before


def _row_major_blocks(spec):
    """(query block, key block) pairs of 128 tokens a window touches when
    tokens stay in row-major order."""
    nbr, _ = spec.neighbors()
    nk_blocks = -(-math.prod(spec.in_shape) // 128)
    qb = (torch.arange(nbr.shape[0]) // 128)[:, None].expand_as(nbr)
    pairs = torch.unique(qb[nbr >= 0] * nk_blocks + nbr[nbr >= 0] // 128)
    return pairs.numel()


@pytest.mark.parametrize('spatial,K,ratio', [((200, 336), 7, 0.6),
                                             ((16, 20, 24), 3, 1.0),
                                             ((56, 56), 7, 1.3),
                                             ((100, 100), 7, 1.3)])
def test_tiles_keep_the_block_mask_tight(spatial, K, ratio):
    """Spatial tiles visit clearly fewer (query, key) blocks than
    row-major order on a detection-size map; on maps narrower than a block
    row-major (which needs no padding) is up to 1.3x better."""
    spec = make_window(spatial, K)
    assert flex_mod.active_blocks(spec) <= ratio * _row_major_blocks(spec)
    assert math.prod(flex_mod.tile_shape(spec)) == flex_mod.BLOCK


@pytest.mark.slow  # inductor's bf16 flex kernel: minutes to compile here
def test_bf16_autocast_forward():
    layer = RelPosAttention(16, 2, kernel_size=3, border='mask',
                            pos_encoding=dict(type='RelativeBiasTable'),
                            backend='flex').eval()
    x = torch.randn(1, 9, 11, 16)
    with torch.no_grad():
        ref = layer(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            got = layer(x)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), ref, rtol=0.05, atol=0.05)


SCRIPT = textwrap.dedent('''
    import resource, sys, warnings, torch
    from convattn_mm.ops import make_window
    from convattn_mm.ops import flex as F
    torch.set_num_threads(1)
    mode = sys.argv[1]
    S, H, D = 100, 3, 32
    spec = make_window((S, S), 7)
    q = torch.randn(1, H, S * S, D)
    bias = torch.randn(H, 169)
    if mode == 'compiled':  # compile first (not capped), then cap
        with torch.no_grad():
            F.flex_attention_op(q, q, q, spec, D ** -0.5, bias)
    with open('/proc/self/statm') as f:
        vm = int(f.read().split()[0]) * resource.getpagesize()
    cap = vm + 400 * 2**20   # one 3 x 10^4 x 10^4 float32 score is 1.1 GiB
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    q2 = torch.randn(1, H, S * S, D)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            if mode == 'compiled':
                out = F.flex_attention_op(q2, q2, q2, spec, D ** -0.5, bias)
            else:  # the same call, flex_attention run eagerly
                lay = F._layout(spec, 'cpu')
                args = (F._gather_tokens(q2, lay['q_source']),
                        F._gather_tokens(q2, lay['k_source']),
                        F._gather_tokens(q2, lay['k_source']),
                        lay['q_coords'], lay['k_coords'], lay['luts'],
                        lay['table_sizes'], bias, None, lay['blocks'],
                        lay['n_q'], lay['n_k'], D ** -0.5)
                out = F._flex_core(*args)
    except (MemoryError, RuntimeError) as e:
        print('OOM', type(e).__name__)
        sys.exit(3)
    print('OK', tuple(out.shape), F.compile_count)
''')


def _run(mode):
    import os
    env = dict(os.environ, TORCHINDUCTOR_COMPILE_THREADS='1')
    return subprocess.run([sys.executable, '-c', SCRIPT, mode],
                          capture_output=True, text=True, timeout=900,
                          env=env)


def test_flex_at_100x100_tokens_is_linear_in_memory():
    """Compiled flex runs 10^4 tokens under a 400 MiB address-space cap
    that eager flex (N x N scores) breaks."""
    proc = _run('compiled')
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert 'OK (1, 3, 10000, 32) 1' in proc.stdout
    proc = _run('eager')
    assert proc.returncode == 3, proc.stdout + proc.stderr[-3000:]
