"""Mutation score of the core modules with mutmut, each module against its
own tests (``make mutation``; not part of ``make test``).

    python tools/misc/mutation.py [MODULE ...] [--max-children 2]
        [--out work_dirs/mutation]

For each module (``windows``, ``encodings``, ``layers``, ``convert``) the
script copies the package and the tests into ``OUT/MODULE/``, writes a
``setup.cfg`` whose ``[mutmut]`` section mutates only that module's files
and selects only its tests, and runs ``mutmut run`` there (mutmut runs, for
each mutant, the tests that call the mutated function, with ``-x``). It then
writes ``OUT/MODULE/summary.json`` and prints the score and every surviving
mutant (``mutmut show NAME`` in ``OUT/MODULE`` prints its diff).

mutmut leaves decorated functions alone (``@property``,
``functools.lru_cache``, ``torch.no_grad``) and module-level code: the score
is over the mutants it generates. Tests that run tools in a subprocess cannot
see mutants (mutmut switches them on inside the test process), so they are
not selected.
"""
import argparse
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MODULES = {
    'encodings': dict(mutate=['convattn_mm/models/encodings/*'],
                      tests=['tests/test_layers/test_encodings.py',
                             'tests/test_layers/test_oracles.py']),
    'layers': dict(mutate=['convattn_mm/models/layers/*'],
                   tests=['tests/test_layers']),
    'convert': dict(mutate=['convattn_mm/convert/*'],
                    tests=['tests/test_convert_layer.py',
                           'tests/test_convert_model.py',
                           'tests/test_downstream/test_pretrained.py::'
                           'test_resnet_to_saresnet_exact_where_representable',
                           'tests/test_downstream/test_pretrained.py::'
                           'test_resnet_to_saresnet_errors']),
    # flex and NATTEN run the window through their own code: slow here
    # (CPU flex) and no stronger than the reference comparisons
    'windows': dict(mutate=['convattn_mm/ops/windows.py'],
                    tests=['tests/test_ops/test_functional.py'],
                    args=['-k', 'not flex and not natten']),
}
IGNORE = shutil.ignore_patterns('__pycache__', '*.pyc', '*.so')


def setup_cfg(module):
    """The repository's setup.cfg plus a [mutmut] section for ``module``."""
    base = open(osp.join(ROOT, 'setup.cfg')).read()
    spec = MODULES[module]

    def lines(items):
        return ''.join(f'\n    {x}' for x in items)

    return base + (
        '\n[mutmut]\n'
        'source_paths = convattn_mm\n'
        f'only_mutate ={lines(spec["mutate"])}\n'
        f'pytest_add_cli_args_test_selection ={lines(spec["tests"])}\n'
        'pytest_add_cli_args =\n    -m\n    not slow\n'
        '    -p\n    no:cacheprovider'
        f'{lines(spec.get("args", []))}\n'
        # torch is not fork-safe once its thread pools exist
        'process_isolation = forkserver\n'
        'use_git_change_detection = false\n')


def run_module(module, out, max_children, python):
    work = osp.join(out, module)
    if osp.exists(work):
        shutil.rmtree(work)
    os.makedirs(work)
    shutil.copytree(osp.join(ROOT, 'convattn_mm'),
                    osp.join(work, 'convattn_mm'), ignore=IGNORE)
    shutil.copytree(osp.join(ROOT, 'tests'), osp.join(work, 'tests'),
                    ignore=IGNORE)
    with open(osp.join(work, 'setup.cfg'), 'w') as f:
        f.write(setup_cfg(module))
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('PYTHONPATH', None)
    start = time.time()
    with open(osp.join(work, 'mutmut.log'), 'w') as log:
        code = subprocess.call(
            [python, '-m', 'mutmut', 'run', '--max-children',
             str(max_children)], cwd=work, env=env, stdout=log,
            stderr=subprocess.STDOUT)
    seconds = time.time() - start
    results = subprocess.run([python, '-m', 'mutmut', 'results', '--all',
                              'true'], cwd=work, env=env,
                             capture_output=True, text=True).stdout
    status = {}
    for line in results.splitlines():
        m = re.match(r'\s*(\S+): (.+)$', line)
        if m:
            status[m.group(1)] = m.group(2).strip()
    counts = {}
    for s in status.values():
        counts[s] = counts.get(s, 0) + 1
    # a mutant no selected test reaches ('no tests') counts as not killed
    tested = sum(v for k, v in counts.items()
                 if k in ('killed', 'survived', 'timeout', 'segfault',
                          'suspicious', 'no tests'))
    killed = sum(v for k, v in counts.items()
                 if k in ('killed', 'timeout', 'segfault'))
    survivors = sorted(n for n, s in status.items() if s == 'survived')
    summary = dict(module=module, mutmut_exit=code,
                   seconds=round(seconds), counts=counts, tested=tested,
                   killed=killed,
                   score=round(killed / tested, 4) if tested else None,
                   survivors=survivors,
                   no_tests=sorted(n for n, s in status.items()
                                   if s == 'no tests'),
                   not_checked=sorted(n for n, s in status.items()
                                      if s == 'not checked'))
    with open(osp.join(work, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('modules', nargs='*', metavar='MODULE',
                   help=f'default: all of {list(MODULES)}')
    p.add_argument('--out', default=osp.join(ROOT, 'work_dirs', 'mutation'))
    p.add_argument('--max-children', type=int, default=2)
    p.add_argument('--python', default=sys.executable)
    args = p.parse_args(argv)
    rows = []
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        p.error(f'unknown module(s) {unknown}; choose from {list(MODULES)}')
    os.makedirs(args.out, exist_ok=True)
    for module in args.modules or list(MODULES):
        s = run_module(module, args.out, args.max_children, args.python)
        rows.append(s)
        score = 'n/a' if s['score'] is None else f'{100 * s["score"]:.1f} %'
        print(f'{module}: killed {s["killed"]} of {s["tested"]} ({score}), '
              f'{s["seconds"]} s; counts {s["counts"]}', flush=True)
        for name in s['survivors']:
            print(f'    survived: {name}')
        for name in s['no_tests']:
            print(f'    no test reaches: {name}')
    with open(osp.join(args.out, 'summary.json'), 'w') as f:
        json.dump(rows, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
