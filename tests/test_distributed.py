"""tools/train.py under ``torchrun --nproc_per_node 2`` on CPU (gloo, DDP
through mmengine's own ``--launcher pytorch``): both ranks finish and each
checkpoint is written once, by rank 0."""
import glob
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TRAIN = osp.join(ROOT, 'tools', 'train.py')
CONFIG = osp.join(ROOT, 'configs', 'convattn_net',
                  'convattnnet-demo_1xb64_digits.py')

# a probe hook, imported by the config through custom_imports
PROBE = '''
import os, os.path as osp
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RankProbeHook(Hook):
    """Leaves files: saved_rank<r>_<n> per checkpoint save, done_rank<r>."""

    def __init__(self, out):
        self.out, self.n = out, 0

    def before_save_checkpoint(self, runner, checkpoint):
        self.n += 1
        open(osp.join(self.out, f'saved_rank{get_rank()}_{self.n}'),
             'w').close()

    def after_run(self, runner):
        open(osp.join(self.out, f'done_rank{get_rank()}'), 'w').close()
'''

CFG = '''
_base_ = {config!r}
custom_imports = dict(imports=['convattn_mm.datasets', 'rank_probe'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='convattn_mm.RNGStateHook'),
                dict(type='RankProbeHook', out={out!r})]
'''

# 8 training images, batch 2 per rank: 2 iterations per rank and epoch
TINY = ['train_dataloader.dataset.indices=8', 'train_dataloader.batch_size=2',
        'val_dataloader.dataset.indices=4', 'train_cfg.max_epochs=2',
        'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=-1',
        'default_hooks.logger.interval=1', 'env_cfg.dist_cfg.backend=gloo']


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_ranks_cpu(tmp_path):
    if not osp.exists(TRAIN):
        pytest.fail('tools/train.py is missing')
    probe_dir = tmp_path / 'probe'
    probe_dir.mkdir()
    (tmp_path / 'rank_probe.py').write_text(PROBE)
    cfg = tmp_path / 'dist_cfg.py'
    cfg.write_text(CFG.format(config=CONFIG, out=str(probe_dir)))
    work = tmp_path / 'work'
    env = dict(os.environ, PYTHONPATH=f'{tmp_path}{os.pathsep}{ROOT}',
               OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    cmd = [sys.executable, '-m', 'torch.distributed.run',
           '--nproc_per_node', '2', '--master_port', str(_free_port()),
           TRAIN, str(cfg), '--launcher', 'pytorch', '--work-dir', str(work),
           '--cfg-options', *TINY]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    markers = sorted(os.listdir(probe_dir))
    # both ranks finished; only rank 0 saved, once per epoch
    assert markers == ['done_rank0', 'done_rank1', 'saved_rank0_1',
                       'saved_rank0_2'], markers
    ckpts = sorted(osp.basename(p) for p in glob.glob(str(work / '*.pth')))
    assert ckpts == ['epoch_1.pth', 'epoch_2.pth']
    ckpt = torch.load(work / 'epoch_2.pth', weights_only=True)
    assert ckpt['meta']['epoch'] == 2
    # RNGStateHook gathered both ranks' states before rank 0 saved
    assert ckpt['rng_state']['world_size'] == 2
    # DDP ran: both ranks did 2 iterations per epoch on 4 images each
    assert ckpt['meta']['iter'] == 4
