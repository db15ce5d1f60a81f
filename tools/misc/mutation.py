"""Mutation score of the core modules with mutmut, each module against its
own tests (``make mutation``; not part of ``make test``).

    python tools/misc/mutation.py [MODULE ...] [--max-children 2]
        [--out work_dirs/mutation] [--mutants NAME_OR_GLOB ...] [--resume]

For each module (``windows``, ``encodings``, ``layers``, ``convert``) the
script copies the package and the tests into ``OUT/MODULE/``, writes a
``setup.cfg`` whose ``[mutmut]`` section mutates only that module's files
and selects only its tests, and runs ``mutmut run`` there (mutmut runs, for
each mutant, the tests that call the mutated function, with ``-x``). It then
writes ``OUT/MODULE/summary.json`` and ``OUT/MODULE/survivors.md`` (the diff
of every surviving mutant) and prints the score.

A survivor is *equivalent* when no program can tell it from the original
(upper-case ``einsum`` subscripts, ``indexing='ij'`` dropped from
``meshgrid``, whose default it is, ...). Those are listed, each with the
reason, in ``tools/misc/equivalent_mutants/MODULE.yaml``: a rule names the
function (a substring of the mutant's name) and two regular expressions that
the removed and the added lines of the diff must match. The score is

    killed / (mutants reached - equivalent survivors)

and the raw ``killed / mutants reached`` is printed next to it. Every other
survivor is printed with its diff: it is either killed by a new test or
explained by a new rule. A rule that matches nothing is reported as stale.

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

import yaml

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# each module against the tests written for it: its unit tests, the user
# error tests and the kernel-path tests that build it
USER_ERRORS = 'tests/test_user_errors.py'
MODULES = {
    'encodings': dict(mutate=['convattn_mm/models/encodings/*'],
                      tests=['tests/test_layers', USER_ERRORS,
                             'tests/test_convert_layer.py',
                             'tests/test_checkpoint_compat.py',
                             'tests/test_ops/test_fused_qkv.py',
                             'tests/test_ops/test_plan.py']),
    'layers': dict(mutate=['convattn_mm/models/layers/*'],
                   tests=['tests/test_layers', USER_ERRORS,
                          'tests/test_checkpoint_compat.py',
                          'tests/test_ops/test_fused_qkv.py',
                          'tests/test_ops/test_fused_boundary.py',
                          'tests/test_ops/test_key_padding.py',
                          'tests/test_ops/test_plan.py']),
    'convert': dict(mutate=['convattn_mm/convert/*'],
                    tests=['tests/test_convert_layer.py',
                           'tests/test_convert_model.py',
                           'tests/test_convert_contracts.py',
                           'tests/test_pretrained_checks.py',
                           'tests/test_checkpoint_compat.py',
                           'tests/test_pose3d/test_convert_tcn.py',
                           'tests/test_downstream/test_pretrained.py',
                           USER_ERRORS]),
    # flex and NATTEN run the window through their own code: slow here
    # (CPU flex) and no stronger than the reference comparisons
    'windows': dict(mutate=['convattn_mm/ops/windows.py'],
                    tests=['tests/test_ops', USER_ERRORS],
                    args=['-k', 'not flex and not natten']),
}
#: read by tests from the repository root
ALSO_COPY = ['configs', 'tools', 'benchmarks', 'README.md']
EQUIVALENTS = osp.join(ROOT, 'tools', 'misc', 'equivalent_mutants')
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


def load_rules(module):
    """The equivalent-mutant rules of ``module`` (see the module docstring)."""
    path = osp.join(EQUIVALENTS, f'{module}.yaml')
    if not osp.exists(path):
        return []
    with open(path) as f:
        rules = yaml.safe_load(f) or []
    for i, rule in enumerate(rules):
        missing = {'function', 'before', 'after', 'why'} - set(rule)
        if missing:
            raise ValueError(f'{path}: rule {i} lacks {sorted(missing)}')
        rule['used'] = 0
    return rules


def diff(work, name, env, python):
    """(removed lines, added lines) of mutant ``name``."""
    out = subprocess.run([python, '-m', 'mutmut', 'show', name], cwd=work,
                         env=env, capture_output=True, text=True).stdout
    lines = out.splitlines()
    removed = [x[1:] for x in lines
               if x.startswith('-') and not x.startswith('---')]
    added = [x[1:] for x in lines
             if x.startswith('+') and not x.startswith('+++')]
    return removed, added


def qualname(name):
    """'pkg.mod.Class.method' from mutmut's 'pkg.mod.xǁClassǁmethod__mutmut_3'
    (and 'pkg.mod.func' from 'pkg.mod.x_func__mutmut_3')."""
    path, _, last = name.split('__mutmut_')[0].rpartition('.')
    last = last[2:].replace('ǁ', '.') if last.startswith('xǁ') else last[2:]
    return f'{path}.{last}'


def matches(rule, name, removed, added):
    function = qualname(name)
    return (rule['function'] in function
            and re.search(rule['before'], '\n'.join(removed)) is not None
            and re.search(rule['after'], '\n'.join(added)) is not None)


def mutmut_status(work, env, python):
    """{mutant name: status} from ``mutmut results`` in ``work``."""
    out = subprocess.run([python, '-m', 'mutmut', 'results', '--all', 'true'],
                         cwd=work, env=env, capture_output=True,
                         text=True).stdout
    status = {}
    for line in out.splitlines():
        m = re.match(r'\s*(\S+): (.+)$', line)
        if m:
            status[m.group(1)] = m.group(2).strip()
    return status


def same_tree(a, b):
    """Whether the .py files under ``a`` and ``b`` are identical."""
    def files(root):
        return {osp.relpath(osp.join(d, f), root)
                for d, _, fs in os.walk(root) for f in fs
                if f.endswith('.py')}
    fa = files(a)
    return fa == files(b) and all(
        open(osp.join(a, f), 'rb').read() == open(osp.join(b, f), 'rb').read()
        for f in fa)


def run_module(module, out, max_children, python, mutants=(), resume=False):
    work = osp.join(out, module)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('PYTHONPATH', None)
    if resume:
        # keep the mutants and verdicts; take today's tests and rerun the
        # survivors (or the given mutants) only
        if not osp.exists(osp.join(work, 'mutants')):
            raise SystemExit(f'--resume: no earlier run in {work}')
        if not same_tree(osp.join(ROOT, 'convattn_mm'),
                         osp.join(work, 'convattn_mm')):
            raise SystemExit(f'--resume: the package changed since the run '
                             f'in {work}; run it afresh')
        shutil.rmtree(osp.join(work, 'tests'))
        if not mutants:
            mutants = [n for n, s in mutmut_status(work, env, python).items()
                       if s in ('survived', 'no tests')]
    else:
        if osp.exists(work):
            shutil.rmtree(work)
        os.makedirs(work)
        shutil.copytree(osp.join(ROOT, 'convattn_mm'),
                        osp.join(work, 'convattn_mm'), ignore=IGNORE)
    shutil.copytree(osp.join(ROOT, 'tests'), osp.join(work, 'tests'),
                    ignore=IGNORE)
    # what tests read from the repository root (configs, tools, ...), where
    # mutmut runs them (not in its config, so that --resume keeps verdicts)
    for name in ALSO_COPY:
        src, dst = osp.join(ROOT, name), osp.join(work, 'mutants', name)
        if osp.isdir(src):
            shutil.copytree(src, dst, ignore=IGNORE, dirs_exist_ok=True)
        else:
            os.makedirs(osp.dirname(dst), exist_ok=True)
            shutil.copy(src, dst)
    with open(osp.join(work, 'setup.cfg'), 'w') as f:
        f.write(setup_cfg(module))
    start = time.time()
    code = 0
    with open(osp.join(work, 'mutmut.log'), 'a' if resume else 'w') as log:
        if mutants or not resume:
            code = subprocess.call(
                [python, '-m', 'mutmut', 'run', '--max-children',
                 str(max_children), *mutants], cwd=work, env=env,
                stdout=log, stderr=subprocess.STDOUT)
    seconds = time.time() - start
    status = mutmut_status(work, env, python)
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
    rules = load_rules(module)
    equivalent, unexplained, report = {}, [], []
    for name in survivors:
        removed, added = diff(work, name, env, python)
        rule = next((r for r in rules if matches(r, name, removed, added)),
                    None)
        if rule is None:
            unexplained.append(name)
        else:
            rule['used'] += 1
            equivalent[name] = rule['why']
        report.append(f'## {name}\n\n' + (
            f'equivalent: {rule["why"]}\n\n' if rule else '') +
            '```diff\n' + ''.join(f'-{x}\n' for x in removed) +
            ''.join(f'+{x}\n' for x in added) + '```\n')
    with open(osp.join(work, 'survivors.md'), 'w') as f:
        f.write(f'# Surviving mutants of {module}\n\n' + '\n'.join(report))
    effective = tested - len(equivalent)
    summary = dict(module=module, mutmut_exit=code,
                   seconds=round(seconds), counts=counts, tested=tested,
                   killed=killed,
                   raw_score=round(killed / tested, 4) if tested else None,
                   score=round(killed / effective, 4) if effective else None,
                   equivalent=equivalent, unexplained=unexplained,
                   stale_rules=[r['why'] for r in rules if not r['used']],
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
    p.add_argument('--mutants', nargs='+', default=[], metavar='NAME',
                   help='run only these mutants (names or globs, as '
                   '`mutmut run` takes them); the rest stay "not checked" '
                   'and out of the score')
    p.add_argument('--resume', action='store_true',
                   help='keep the mutants and verdicts of the last run in '
                   'OUT/MODULE (the package must be unchanged), copy '
                   "today's tests there and rerun only the survivors (or "
                   '--mutants): the check after adding tests')
    args = p.parse_args(argv)
    rows = []
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        p.error(f'unknown module(s) {unknown}; choose from {list(MODULES)}')
    os.makedirs(args.out, exist_ok=True)
    for module in args.modules or list(MODULES):
        s = run_module(module, args.out, args.max_children, args.python,
                       args.mutants, args.resume)
        rows.append(s)
        score = 'n/a' if s['score'] is None else f'{100 * s["score"]:.1f} %'
        raw = ('n/a' if s['raw_score'] is None
               else f'{100 * s["raw_score"]:.1f} %')
        print(f'{module}: score {score} (killed {s["killed"]} of '
              f'{s["tested"]} reached, less {len(s["equivalent"])} '
              f'equivalent; raw {raw}), {s["seconds"]} s; counts '
              f'{s["counts"]}', flush=True)
        for name in s['unexplained']:
            print(f'    survived: {name}')
        for why in s['stale_rules']:
            print(f'    stale rule (matches nothing): {why}')
        for name in s['no_tests']:
            print(f'    no test reaches: {name}')
    with open(osp.join(args.out, 'summary.json'), 'w') as f:
        json.dump(rows, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
