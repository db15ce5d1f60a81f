"""The package's import graph: every subpackage imports on its own, and the
graph of imports between ``convattn_mm`` modules has no loop, counting the
imports written inside functions (a lazy import can hide a loop that would
break as soon as someone moves it to the top of the file).

Imports of other packages inside functions are optional or heavy
dependencies (natten, matplotlib, sklearn, mmengine's runner, ...) and
cannot form a loop through this package; they are not checked here.
"""
import ast
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'convattn_mm'

SUBPACKAGES = sorted(
    '.'.join(p.relative_to(ROOT).parent.parts)
    for p in PACKAGE.rglob('__init__.py') if 'csrc' not in p.parts)

#: function-level imports of this package's own modules that are allowed,
#: each with its reason (module -> imported module)
LAZY_INTERNAL = {
    # the fallback path is only needed when flex attention is unavailable
    ('convattn_mm.ops.flex', 'convattn_mm.ops.reference'),
}


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts = parts[:-1]
    return '.'.join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob('*.py')}


def resolve(importer, node):
    """Modules of this package named by one import statement."""
    is_pkg = MODULES[importer].name == '__init__.py'
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    if node.level:
        base = importer.split('.')
        base = base[:len(base) - node.level + (1 if is_pkg else 0)]
        target = '.'.join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ''
    # `from . import sibling` needs the package only as a namespace (it is
    # being imported already); the edges go to the named submodules
    found = [target] if target in MODULES and node.module else []
    for alias in node.names:  # `from pkg import submodule`
        sub = f'{target}.{alias.name}'
        if sub in MODULES:
            found.append(sub)
    return found


def import_edges():
    """``(importer, imported, lazy)`` for every import between modules of
    the package; ``lazy``: written inside a function."""
    edges = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        lazy_nodes = {
            id(sub)
            for fn in ast.walk(tree)
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for sub in ast.walk(fn)
        }
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in resolve(name, node):
                    if target != name:
                        edges.append((name, target, id(node) in lazy_nodes))
    return edges


def find_cycle(edges):
    graph = {}
    for a, b, _ in edges:
        graph.setdefault(a, set()).add(b)
    state, stack = {}, []

    def visit(node):
        state[node] = 'open'
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 'open':
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 'done'
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_graph_is_seen():
    edges = import_edges()
    pairs = {(a, b) for a, b, _ in edges}
    # the check reads real imports (a parser that saw nothing would pass)
    assert ('convattn_mm.convert.conv', 'convattn_mm.models.layers') in pairs
    assert ('convattn_mm.models.encodings.quadratic',
            'convattn_mm.models.encodings.base') in pairs
    assert find_cycle([('a', 'b', False), ('b', 'c', True),
                       ('c', 'a', False)]) == ['a', 'b', 'c', 'a']


def test_no_import_loops_even_through_lazy_imports():
    cycle = find_cycle(import_edges())
    assert cycle is None, 'import loop: ' + ' -> '.join(cycle)


def test_lazy_internal_imports_are_listed():
    lazy = {(a, b) for a, b, is_lazy in import_edges() if is_lazy}
    assert lazy <= LAZY_INTERNAL, (
        f'imports of convattn_mm modules inside functions: '
        f'{sorted(lazy - LAZY_INTERNAL)}; import at the top of the file '
        f'(or list the pair in LAZY_INTERNAL with its reason)')


def test_each_subpackage_imports_alone():
    """One fresh interpreter per subpackage (run side by side: each mostly
    waits for torch's import)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = {
        name: subprocess.Popen([sys.executable, '-c', f'import {name}'],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
        for name in SUBPACKAGES
    }
    failed = {}
    for name, proc in procs.items():
        _, err = proc.communicate()
        if proc.returncode:
            failed[name] = err[-1500:]
    assert not failed, failed
