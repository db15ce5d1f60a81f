"""Every user-facing entry point runs: the main job (tools/demo.py), the FLOP
counter, the gallery, and the README's Python code, read from the README
itself. Budgets are tiny (a few images, one epoch): these tests check that
the commands run end to end and write what they promise, not accuracy."""
import importlib.util
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs', 'convattn_net',
                'convattnnet-demo_1xb64_digits.py')
# 16 training images in batches of 8, 16 test images, no warm-up schedule
TINY = [
    'train_dataloader.dataset.indices=16', 'train_dataloader.batch_size=8',
    'val_dataloader.dataset.indices=16', 'test_dataloader.dataset.indices=16',
    'param_scheduler=[]'
]
PNG = b'\x89PNG\r\n\x1a\n'


def _run(args, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join(
                   [ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _tool(name):
    spec = importlib.util.spec_from_file_location(
        name, osp.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    work = tmp_path_factory.mktemp('demo')
    out = _run([osp.join('tools', 'demo.py'), '--work-dir', str(work),
                '--epochs', '1', '--cfg-options', *TINY])
    return work, out


def test_demo_on_a_tiny_budget(demo_run):
    work, out = demo_run
    acc = re.search(r'test accuracy: ([\d.]+) % on (\d+) held-out digits',
                    out)
    assert acc, out[-2000:]
    assert 0 <= float(acc.group(1)) <= 100 and acc.group(2) == '16'
    ckpt = re.search(r'^checkpoint:\s+(\S+)$', out, re.M).group(1)
    assert osp.exists(ckpt) and ckpt.startswith(str(work))
    picture = re.search(r'^picture:\s+(\S+)$', out, re.M).group(1)
    assert picture == str(work / 'demo.png')
    assert (work / 'demo.png').read_bytes()[:8] == PNG


def test_gallery_on_the_demo_checkpoint(demo_run, tmp_path):
    work, _ = demo_run
    ckpt = open(work / 'last_checkpoint').read().strip()
    out_dir = tmp_path / 'gallery'
    _run([
        osp.join('tools', 'make_gallery.py'), '--demo-checkpoint', ckpt,
        '--out', str(out_dir), '--work-dir', str(tmp_path / 'work'),
        '--cnn-epochs', '1', '--finetune-epochs', '1', '--num-images', '2',
        '--train-images', '16', '--test-images', '8', '--layers', '0'
    ])
    summary = json.loads((out_dir / 'gallery.json').read_text())
    assert summary['demo']['trained'] is True
    assert osp.samefile(osp.join(ROOT, summary['demo']['checkpoint']), ckpt)
    conv = summary['converted']
    assert conv['cnn_epochs'] == 1 and conv['finetune_epochs'] == 1
    for key in ('cnn_test_top1', 'finetuned_test_top1'):
        assert 0 <= conv[key] <= 100
    assert conv['before'] and set(conv['before']) == set(conv['after'])
    for part in ('demo', 'converted-before', 'converted-after'):
        folder = out_dir / part
        pngs = list(folder.glob('*.png'))
        assert pngs, f'no figures in {part}'
        assert all(p.read_bytes()[:8] == PNG for p in pngs)
        measures = json.loads((folder / 'measures.json').read_text())
        assert measures['heads']


def test_get_flops_counts_the_attention_core():
    """One RelPosAttention (C=16, 2 heads, 3x3 window) on an 8x8 map:
    attention ``B·heads·N·K_w·2·head_dims`` = 1·2·64·9·2·8 multiply-adds,
    projections ``N·C·3C + N·C·C``, parameters by hand."""
    from convattn_mm.models.layers import RelPosAttention

    class Net(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.attn = RelPosAttention(
                16, 2, kernel_size=3, border='mask',
                pos_encoding=dict(type='RelativeBiasTable'))

        def forward(self, x):
            return self.attn.forward_nchw(x)

    r = _tool('get_flops').complexity(Net(), (8, 8), in_channels=16)
    assert r['attention_flops'] == 1 * 2 * 64 * 9 * 2 * 8
    assert r['other_flops'] == 64 * 16 * 48 + 64 * 16 * 16
    assert r['flops'] == r['attention_flops'] + r['other_flops']
    assert r['params'] == (16 * 48 + 48) + (16 * 16 + 16) + 2 * 3 * 3


def test_get_flops_command():
    out = _run([osp.join('tools', 'get_flops.py'), DEMO, '--shape', '96'])
    assert 'input shape:     (96, 96)' in out
    params = float(re.search(r'params:\s+([\d.]+) M', out).group(1))
    total = float(re.search(r'FLOPs:\s+([\d.]+) G', out).group(1))
    attn = float(re.search(r'attention:\s+([\d.]+) G', out).group(1))
    other = float(re.search(r'everything else: ([\d.]+) G', out).group(1))
    assert params > 0 and attn > 0 and other > 0
    assert abs(total - attn - other) <= 0.0015  # printed to 3 decimals


def readme_python_blocks():
    text = open(osp.join(ROOT, 'README.md'), encoding='utf-8').read()
    return re.findall(r'^```python\n(.*?)^```', text, flags=re.S | re.M)


README_BLOCKS = readme_python_blocks()


def test_readme_has_python_blocks():
    assert len(README_BLOCKS) >= 2


@pytest.mark.parametrize('index', range(len(README_BLOCKS)))
def test_readme_python_block_runs_as_written(index):
    """Each block runs on its own, in a fresh namespace, as a reader would
    paste it."""
    code = compile(README_BLOCKS[index], f'README.md python block {index}',
                   'exec')
    exec(code, {'__name__': '__readme__'})
