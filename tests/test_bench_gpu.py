"""benchmarks/bench_gpu.py cannot rot: its harness runs on the CPU at tiny
sizes, and without CUDA the real run stops at once with a clear message."""
import json
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'benchmarks', 'bench_gpu.py')


def _run(*args, timeout=900):
    env = dict(os.environ, PYTHONPATH=ROOT, TORCHINDUCTOR_COMPILE_THREADS='1')
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is present')
def test_without_cuda_it_fails_fast_and_says_why():
    proc = _run('--json', os.devnull, timeout=120)
    assert proc.returncode == 2
    assert 'needs a CUDA device' in proc.stderr


def test_dry_run_prints_the_cuda_plans():
    proc = _run('--dry-run', timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'plan: AttentionPlan(' in proc.stdout
    assert "border='zeros'" in proc.stdout


def test_tiny_cpu_run_fills_every_section(tmp_path):
    out = tmp_path / 'bench.json'
    proc = _run('--device', 'cpu', '--tiny', '--json', str(out),
                '--budget-s', '100000')
    data = json.loads(out.read_text())
    assert set(data['sections']) == {'correctness', 'speed', 'models'}, \
        proc.stdout[-3000:]
    for name, section in data['sections'].items():
        assert 'rows' in section, (name, section)
    rows = data['sections']['correctness']['rows']
    assert {r['rank'] for r in rows} == {1, 2, 3}
    assert {r['border'] for r in rows} == {'shift', 'mask', 'zeros'}
    assert {r['backend'] for r in rows} >= {'fused_cpu', 'gather'}
    assert all(r['ok'] for r in rows), [r for r in rows if not r['ok']]
    layers = {r['layer'] for r in data['sections']['speed']['rows']}
    assert {'Conv2d 3x3', 'global SDPA'} <= layers
    models = {r['model'] for r in data['sections']['models']['rows']}
    assert models == {'ConvAttnNet-T', 'SAResNet-50', 'Swin-T'}
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '== speed ==' in proc.stdout


def test_time_budget_skips_sections(tmp_path):
    out = tmp_path / 'bench.json'
    proc = _run('--device', 'cpu', '--tiny', '--json', str(out),
                '--budget-s', '0', timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sections = json.loads(out.read_text())['sections']
    assert sections == {name: dict(skipped='time budget')
                        for name in ('correctness', 'speed', 'models')}
