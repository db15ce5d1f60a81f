"""tools/train.py and tools/test.py run one iteration in a subprocess."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs', 'convattn_net',
                'convattnnet-demo_1xb64_digits.py')
# one epoch of one batch of 8 images = one iteration
ONE_ITER = [
    'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
    'train_dataloader.batch_size=8', 'train_dataloader.dataset.indices=8',
    'val_dataloader.dataset.indices=16', 'param_scheduler=[]',
    'default_hooks.checkpoint.interval=1'
]


def _run(args):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp('train') / 'work'
    _run([osp.join(ROOT, 'tools', 'train.py'), DEMO, '--work-dir', str(work),
          '--cfg-options', *ONE_ITER])
    return work


def test_train_one_iteration(trained):
    assert (trained / 'epoch_1.pth').exists()
    logs = list(trained.glob('*/vis_data/scalars.json'))
    rows = [json.loads(line) for line in logs[0].read_text().splitlines()]
    assert any('loss' in r for r in rows)
    assert any('accuracy/top1' in r for r in rows)


def test_test_tool_on_the_checkpoint(trained, tmp_path):
    out = tmp_path / 'metrics.json'
    _run([osp.join(ROOT, 'tools', 'test.py'), DEMO,
          str(trained / 'epoch_1.pth'), '--work-dir', str(tmp_path / 'w'),
          '--out', str(out), '--cfg-options',
          'test_dataloader.dataset.indices=16'])
    metrics = json.loads(out.read_text())
    assert 0 <= metrics['accuracy/top1'] <= 100
