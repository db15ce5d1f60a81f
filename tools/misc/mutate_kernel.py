"""Mutation test of the C++ kernel (``convattn_mm/ops/csrc``).

    python tools/misc/mutate_kernel.py [--only NAME ...] [--json OUT]
        [--python-mutants]

Each mutant is one small, plausible bug at a place where the kernel splits
work over threads (``parallel_for``, the 64-query chunks, the work-item
decode) or handles the window's borders (masked and zero-padded keys, the
AVX-512 tail and masks). For each mutant the script copies the package and
the tests into a temporary folder, applies the edit to the copy's kernel
source, compiles it into a temporary cache (``CONVATTN_MM_CACHE``, shared by
the run and removed after it), and runs
the kernel tests (``tests/test_ops/test_threads.py``, then the fused-backend
tests of ``tests/test_ops/test_functional.py``) with fast-fail. A mutant is
*killed* when the tests fail, *survived* when they pass. The unmutated copy
runs first and must pass. An edit whose text is no longer in the source
(the kernel changed) is reported as ``not applicable``: update the table.
A mutant counts as killed when a test fails (its name is printed) or the
test process crashes; a collection error is an ``error``, not a kill.

``--python-mutants`` adds a few Python bugs that once survived every test
of their module (``PY_MUTANTS``), each run against its module's tests.

Exit status: 0 when every applicable mutant was killed, 1 otherwise.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SRC = osp.join('convattn_mm', 'ops', 'csrc', 'neighborhood_cpu.cpp')
TESTS = [
    'tests/test_ops/test_threads.py',
    'tests/test_ops/test_functional.py::test_backend_matches_reference',
    'tests/test_ops/test_functional.py::test_specialised_head_dims',
    'tests/test_ops/test_functional.py::test_conv_like_one_hot_bias_is_exact',
    'tests/test_ops/test_functional.py::test_gradcheck',
]

# name -> (original text, mutated text); the original must occur once.
MUTANTS = {
    # --- work split -------------------------------------------------------
    'parallel_for: each worker skips its first item': (
        'fn(n * t / nthreads, n * (t + 1) / nthreads);',
        'fn(n * t / nthreads + 1, n * (t + 1) / nthreads);'),
    'parallel_for: each worker drops its last item': (
        'fn(n * t / nthreads, n * (t + 1) / nthreads);',
        'fn(n * t / nthreads, n * (t + 1) / nthreads - 1);'),
    'parallel_for: the calling thread stops one item early': (
        'fn(0, n / nthreads);', 'fn(0, n / nthreads - 1);'),
    'parallel_for: no worker for the last share': (
        'for (int t = 1; t < nthreads; ++t) {',
        'for (int t = 1; t < nthreads - 1; ++t) {'),
    'parallel_for: shares overlap (worker starts one item early)': (
        'fn(n * t / nthreads, n * (t + 1) / nthreads);',
        'fn(n * t / nthreads - 1, n * (t + 1) / nthreads);'),
    'forward: partial last chunk of queries dropped': (
        'const int64_t nchunks = (g.Nq + chunk - 1) / chunk;\n'
        '  // Items ordered',
        'const int64_t nchunks = g.Nq / chunk;\n  // Items ordered'),
    'forward: last query of every chunk skipped': (
        '      const int64_t i_end = std::min(g.Nq, (c + 1) * chunk);\n'
        '      for (int64_t i = c * chunk; i < i_end; ++i) {\n'
        '        std::memcpy(qv,',
        '      const int64_t i_end = std::min(g.Nq, (c + 1) * chunk) - 1;\n'
        '      for (int64_t i = c * chunk; i < i_end; ++i) {\n'
        '        std::memcpy(qv,'),
    'backward: (b, h) decoded with B instead of H': (
        '    for (int64_t bh = lo; bh < hi; ++bh) {\n'
        '      const int64_t b = bh / g.H, h = bh % g.H;\n'
        '      const T* qbh',
        '    for (int64_t bh = lo; bh < hi; ++bh) {\n'
        '      const int64_t b = bh % g.B, h = bh / g.B;\n'
        '      const T* qbh'),
    # --- borders ----------------------------------------------------------
    'forward: zero-padded keys treated as masked': (
        '          if (n == -1) {\n            s[j] = ninf;',
        '          if (n < 0) {\n            s[j] = ninf;'),
    'forward: zero-padded keys lose their relative key': (
        '                        : dotn<T, DT>(qv, rk_h + t * D, D);',
        '                        : T(0);'),
    'forward: zero-padded keys lose their bias': (
        'const T val = scale * cc + (bias_h ? bias_h[t] : T(0));',
        'const T val = scale * cc + (bias_h && n >= 0 ? bias_h[t] : T(0));'),
    'backward: no relative-key gradient through zero-padded keys': (
        '          if (rk_h) {\n            axpyn<T, DT>(cs, rk_h + t * D, '
        'dqv, D);',
        '          if (rk_h && n >= 0) {\n            axpyn<T, DT>(cs, '
        'rk_h + t * D, dqv, D);'),
    'backward: bias gradient only for in-map keys': (
        '          if (dbias_bh) dbias_bh[t] += ds;',
        '          if (dbias_bh && n >= 0) dbias_bh[t] += ds;'),
    'avx512: zero-padded keys lose their relative key': (
        'const float* rrow = n != -1 ? rk_h + tt[u] * D : kZeros;',
        'const float* rrow = n >= 0 ? rk_h + tt[u] * D : kZeros;'),
    'avx512: bias read for in-map keys only': (
        '(__mmask16)~bl.masked, bl.t,', 'bl.haskey, bl.t,'),
    'avx512: last partial block of window slots dropped': (
        'bl.live = rem >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) '
        '- 1);',
        'bl.live = rem >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) '
        '- 1) >> 1;'),
    'avx512 backward: one accumulator set of dq dropped': (
        '          dqz[cc] = _mm512_add_ps(_mm512_add_ps(dqz[cc], '
        'dq2[1][cc]),\n                                  dq2[0][cc]);',
        '          dqz[cc] = _mm512_add_ps(dqz[cc], dq2[0][cc]);'),
}


# Python bugs that once survived every test of their module; each must stay
# killed. name -> (file, original text, mutated text, tests to run).
PY_MUTANTS = {
    'QuadraticEncoding.precision: LᵀL instead of LLᵀ': (
        'convattn_mm/models/encodings/quadratic.py',
        'return low @ low.transpose(1, 2)',
        'return low.transpose(1, 2) @ low', ['tests/test_layers']),
    'QuadraticEncoding: α from the mass divided by d_min, not d_min²': (
        'convattn_mm/models/encodings/quadratic.py',
        'alpha_for_mass(n, 1 - init_mass, min(self.step)**2)',
        'alpha_for_mass(n, 1 - init_mass, min(self.step))',
        ['tests/test_layers']),
    'RelPosAttention: scale embed_dims**-0.5 instead of head_dims**-0.5': (
        'convattn_mm/models/layers/rel_pos_attention.py',
        'self.scale = head_dims**-0.5', 'self.scale = embed_dims**-0.5',
        ['tests/test_layers']),
    'LogCPB: sign(δ) dropped': (
        'convattn_mm/models/encodings/log_cpb.py',
        'return torch.sign(x) * torch.log2(1 + x.abs())',
        'return torch.log2(1 + x.abs())', ['tests/test_layers']),
    'table resize: align_corners flipped': (
        'convattn_mm/models/encodings/base.py',
        'mode=mode,\n        align_corners=True)',
        'mode=mode,\n        align_corners=False)', ['tests/test_layers']),
}


def _run(cmd, cwd, env, timeout):
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=timeout)
        return proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        return 'timeout', str(e)


def try_mutant(name, edit, python, timeout, cache, path=SRC, tests=TESTS):
    """Apply ``edit`` (None: none) to ``path`` in a copy; returns (status,
    seconds, detail)."""
    start = time.time()
    with tempfile.TemporaryDirectory(prefix='cam_mutant_') as tmp:
        shutil.copytree(osp.join(ROOT, 'convattn_mm'),
                        osp.join(tmp, 'convattn_mm'),
                        ignore=shutil.ignore_patterns('__pycache__'))
        shutil.copytree(osp.join(ROOT, 'tests'), osp.join(tmp, 'tests'),
                        ignore=shutil.ignore_patterns('__pycache__'))
        shutil.copy(osp.join(ROOT, 'setup.cfg'), tmp)
        src = osp.join(tmp, path)
        text = open(src).read()
        if edit is not None:
            old, new = edit
            if text.count(old) != 1:
                return 'not applicable', 0.0, (
                    f'the original text occurs {text.count(old)} times')
            with open(src, 'w') as f:
                f.write(text.replace(old, new))
        env = dict(os.environ, PYTHONPATH=tmp, OMP_NUM_THREADS='1',
                   CONVATTN_MM_CACHE=cache)
        code, out = _run([
            python, '-c', 'from convattn_mm.ops import fused_cpu; '
            'print(fused_cpu.build())'
        ], tmp, env, timeout)
        if code != 0:
            return 'did not compile', time.time() - start, out[-1500:]
        code, out = _run([
            python, '-m', 'pytest', '-q', '-x', '-p', 'no:cacheprovider',
            *tests
        ], tmp, env, timeout)
        lines = [ln for ln in out.splitlines() if ln.strip()]
        if code == 0:
            return 'survived', time.time() - start, lines[-1]
        # killed only by a failing test, not by a broken test environment
        failed = [ln for ln in lines if ln.startswith('FAILED')]
        if code == 1 and failed:
            return 'killed', time.time() - start, failed[0][:300]
        crashed = code not in (0, 1, 2, 3, 4, 5, 'timeout')
        if crashed or code == 'timeout':
            return 'killed', time.time() - start, f'exit {code} (crash)'
        return 'error', time.time() - start, '\n'.join(lines[-15:])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--only', nargs='*', default=None,
                   help='run the mutants whose name contains one of these')
    p.add_argument('--json', default=None, help='write the results here')
    p.add_argument('--timeout', type=int, default=900,
                   help='seconds per build and per test run')
    p.add_argument('--python', default=sys.executable)
    p.add_argument('--python-mutants', action='store_true',
                   help='also the Python bugs of PY_MUTANTS (mutants that '
                   'once survived the suite)')
    args = p.parse_args(argv)
    todo = [(n, SRC, e, TESTS) for n, e in MUTANTS.items()]
    if args.python_mutants:
        todo += [(n, f, (old, new), t)
                 for n, (f, old, new, t) in PY_MUTANTS.items()]
    todo = [m for m in todo
            if args.only is None or any(s in m[0] for s in args.only)]
    # one cache for the run: the unmutated library is built once, each
    # mutated kernel source gets its own file (the cache key is its hash)
    cache = tempfile.mkdtemp(prefix='cam_mutant_cache_')
    try:
        return _main(args, todo, cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _main(args, todo, cache):
    tests = sorted({t for m in todo for t in m[3]} | set(TESTS))
    status, secs, detail = try_mutant('clean', None, args.python,
                                      args.timeout, cache, tests=tests)
    print(f'clean copy: {status} ({secs:.0f} s) {detail}', flush=True)
    if status != 'survived':
        print('the unmutated code must pass its tests first')
        return 2
    results = []
    for name, path, edit, mutant_tests in todo:
        status, secs, detail = try_mutant(name, edit, args.python,
                                          args.timeout, cache, path,
                                          mutant_tests)
        results.append(dict(mutant=name, status=status,
                            seconds=round(secs, 1), detail=detail))
        print(f'{status:>15}  {name}  ({secs:.0f} s)  {detail}', flush=True)
    applicable = [r for r in results
                  if r['status'] in ('killed', 'survived', 'error')]
    killed = sum(r['status'] == 'killed' for r in applicable)
    print(f'\nkilled {killed} of {len(applicable)} applicable mutants '
          f'({len(results) - len(applicable)} not applicable or not '
          f'compiling)')
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)
    return 0 if killed == len(applicable) else 1


if __name__ == '__main__':
    sys.exit(main())
