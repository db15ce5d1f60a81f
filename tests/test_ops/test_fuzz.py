"""Property fuzz of the functional op (hypothesis).

Each drawn case (rank, map size, kernel, dilation, border, query stride,
heads, dims, batch 0-2, dtype, memory layout, position terms, scale,
backend) either equals the brute-force reference or raises a documented
error: ``ValueError`` / ``TypeError`` for arguments the op does not accept
(then the reference raises the same type), ``NotImplementedError`` only
where :func:`backend_support` gives the backend a reason.

The cases run in a subprocess, so a crash in a kernel (a segfault) fails
this test with the case that caused it instead of killing the test run.
``derandomize=True``: the same cases on every run (bounded, for CI).
``flex`` runs eagerly on the CPU, seconds per case, so the CI run leaves it
out and a ``slow`` run covers it.
"""
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip('hypothesis')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: examples per CI run (a few seconds of kernels, plus the imports)
MAX_EXAMPLES = 60
FAST_BACKENDS = ('fused_cpu', 'gather', 'natten', 'reference')
TOLERANCE = {'float64': 1e-9, 'float32': 2e-5}


def run_fuzz(max_examples=MAX_EXAMPLES, backends=FAST_BACKENDS):
    """The fuzz loop (runs inside the subprocess)."""
    import torch
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from convattn_mm.ops import backend_support, neighborhood_attention
    from convattn_mm.ops.functional import _request
    from convattn_mm.ops.windows import make_window

    torch.set_num_threads(1)
    kernels = st.one_of(st.sampled_from([1, 3, 5, 7]), st.just('global'))

    @st.composite
    def cases(draw):
        rank = draw(st.integers(1, 3))
        spatial = tuple(draw(st.integers(1, 9 if rank < 3 else 5))
                        for _ in range(rank))
        return dict(
            spatial=spatial,
            kernel_size=draw(st.one_of(kernels, st.tuples(
                *[st.sampled_from([1, 3, 5]) for _ in range(rank)]))),
            dilation=draw(st.integers(1, 3)),
            border=draw(st.sampled_from(['shift', 'mask', 'zeros'])),
            query_stride=draw(st.integers(1, 3)),
            batch=draw(st.integers(0, 2)),
            heads=draw(st.integers(1, 3)),
            dim=draw(st.integers(1, 6)),
            v_dim=draw(st.integers(1, 6)),
            dtype=draw(st.sampled_from(['float32', 'float64'])),
            layout=draw(st.sampled_from(['contiguous', 'channels_first',
                                         'strided'])),
            bias=draw(st.booleans()),
            rel=draw(st.booleans()),
            scale=draw(st.one_of(st.none(), st.floats(0.05, 2.0))),
            backend=draw(st.sampled_from(sorted(backends))),
            seed=draw(st.integers(0, 2**16)))

    def tensor(shape, dtype, layout, gen):
        if layout == 'channels_first':  # same values, permuted strides
            t = torch.randn(shape[-1], *shape[:-1], generator=gen,
                            dtype=torch.float64)
            return t.movedim(0, -1).to(dtype)
        if layout == 'strided':  # every other element of a wider tensor
            t = torch.randn(*shape[:-1], 2 * shape[-1], generator=gen,
                            dtype=torch.float64)
            return t[..., ::2].to(dtype)
        return torch.randn(*shape, generator=gen,
                           dtype=torch.float64).to(dtype)

    @settings(max_examples=max_examples, deadline=None, derandomize=True,
              database=None, suppress_health_check=list(HealthCheck))
    @given(cases())
    def check(case):
        print('case', case, flush=True)  # the last line names a crash
        dtype = getattr(torch, case['dtype'])
        gen = torch.Generator().manual_seed(case['seed'])
        H, D, Dv, B = case['heads'], case['dim'], case['v_dim'], case['batch']
        shape = (B, *case['spatial'], H)
        q = tensor(shape + (D, ), dtype, case['layout'], gen)
        k = tensor(shape + (D, ), dtype, case['layout'], gen)
        v = tensor(shape + (Dv, ), dtype, case['layout'], gen)
        args = dict(kernel_size=case['kernel_size'],
                    dilation=case['dilation'], border=case['border'],
                    query_stride=case['query_stride'], scale=case['scale'])
        try:
            spec = make_window(case['spatial'], case['kernel_size'],
                               case['dilation'], case['border'],
                               case['query_stride'])
        except (ValueError, TypeError) as err:
            with_error = type(err)
            spec = None
        if spec is not None:
            table = spec.table_shape
            if case['bias']:
                args['pos_bias'] = tensor((H, *table), dtype, 'contiguous',
                                          gen)
            if case['rel']:
                args['rel_keys'] = 0.5 * tensor((H, *table, D), dtype,
                                                case['layout'], gen)
        try:
            want = neighborhood_attention(
                q.double(), k.double(), v.double(), backend='reference',
                **{n: (a.double() if torch.is_tensor(a) else a)
                   for n, a in args.items()})
        except (ValueError, TypeError) as err:
            # an argument the op does not take: every backend says so too
            try:
                neighborhood_attention(q, k, v, backend=case['backend'],
                                       **args)
            except type(err):
                print('outcome rejected', flush=True)
                return
            raise AssertionError(f'reference raised {err!r}, '
                                 f"{case['backend']} did not")
        assert spec is not None, f'reference ran where make_window raised ' \
            f'{with_error}'
        request = _request(q, args.get('pos_bias'), args.get('rel_keys'),
                           (q, k, v))
        reason = backend_support(spec, request).reasons[case['backend']]
        try:
            got = neighborhood_attention(q, k, v, backend=case['backend'],
                                         **args)
        except NotImplementedError as err:
            assert reason is not None, f'undocumented refusal: {err}'
            print('outcome refused', flush=True)
            return
        assert reason is None, f'ran although refused: {reason}'
        assert got.dtype == dtype and got.shape == want.shape
        tol = TOLERANCE[case['dtype']]
        torch.testing.assert_close(got.double(), want, atol=tol, rtol=tol)
        print('outcome equal', flush=True)

    check()
    print('fuzz: done', flush=True)


def _fuzz_in_subprocess(max_examples, backends):
    code = textwrap.dedent(f'''
        import warnings
        warnings.simplefilter('ignore')
        from tests.test_ops.test_fuzz import run_fuzz
        run_fuzz({max_examples}, {tuple(backends)!r})
    ''')
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join(
                   [ROOT, os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    lines = proc.stdout.splitlines()
    last = next((ln for ln in reversed(lines) if ln.startswith('case')),
                'no case')
    if proc.returncode < 0:
        pytest.fail(f'the kernel crashed (signal {-proc.returncode}) on '
                    f'{last}')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert lines[-1] == 'fuzz: done'
    assert sum(ln.startswith('case') for ln in lines) >= max_examples
    # most cases compare numbers, not just errors
    equal = sum(ln == 'outcome equal' for ln in lines)
    assert equal >= max_examples // 3, proc.stdout[-3000:]
    return lines


def test_fuzz_against_reference_in_a_subprocess():
    _fuzz_in_subprocess(MAX_EXAMPLES, FAST_BACKENDS)


@pytest.mark.slow
def test_fuzz_flex_against_reference_in_a_subprocess():
    _fuzz_in_subprocess(30, ('flex', ))


def test_a_crash_fails_the_test_with_its_case(monkeypatch):
    """The harness itself: a kernel that kills its process is reported as a
    failure naming the case, not as a dead test run."""
    import tests.test_ops.test_fuzz as this
    code = ("import os, signal; print('case', {'backend': 'x'}, "
            "flush=True); os.kill(os.getpid(), signal.SIGSEGV)")
    real = subprocess.run

    def fake(cmd, **kw):
        return real([sys.executable, '-c', code], **kw)

    monkeypatch.setattr(this.subprocess, 'run', fake)
    with pytest.raises(pytest.fail.Exception,
                       match=r"crashed \(signal 11\) on case \{'backend'"):
        _fuzz_in_subprocess(1, ('gather', ))
