"""RNGStateHook: a run killed with SIGKILL and resumed reaches the same
weights as the uninterrupted run (random augmentation in python/numpy/torch,
drop-path and dropout active, validation between epochs).

This file is also the training script the tests run in subprocesses:
``python tests/test_engine_hooks.py WORK_DIR [--loop epoch|iter] [--workers N]
[--resume] [--pause-at ITER] [--no-rng-hook]``.
"""
import argparse
import itertools
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn as nn

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(HERE)


# --------------------------------------------------------------------------
# the tiny training job (child process)
# --------------------------------------------------------------------------
_RUN_IDS = itertools.count()


class Crash(RuntimeError):
    """Raised by ``--pause-at N --crash`` at training iteration N."""


def _build_runner(args):
    from mmengine.evaluator import BaseMetric, Evaluator
    from mmengine.hooks import Hook
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    from convattn_mm import compat
    compat.apply()

    class DropPath(nn.Module):
        def __init__(self, p):
            super().__init__()
            self.p = p

        def forward(self, x):
            if not self.training:
                return x
            keep = (torch.rand(x.shape[0], 1, 1, 1) >= self.p).to(x.dtype)
            return x * keep / (1 - self.p)

    class Net(BaseModel):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 8, 3, padding=1)
            self.block = nn.Conv2d(8, 8, 3, padding=1)
            self.drop_path = DropPath(0.3)
            self.drop = nn.Dropout(0.2)
            self.head = nn.Linear(8, 4)

        def forward(self, inputs, labels, mode='tensor'):
            x = torch.relu(self.stem(inputs))
            x = x + self.drop_path(torch.relu(self.block(x)))
            logits = self.head(self.drop(x.mean((2, 3))))
            if mode == 'loss':
                return dict(loss=nn.functional.cross_entropy(logits, labels))
            if mode == 'predict':
                return list(zip(logits.argmax(1), labels))
            return logits

    class Data(torch.utils.data.Dataset):
        """Fixed images; random flip (python), crop (numpy), noise (torch)."""

        def __init__(self, n):
            g = np.random.default_rng(123)
            self.images = g.standard_normal((n, 1, 10, 10)).astype('float32')
            self.labels = g.integers(0, 4, n)

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            img = torch.from_numpy(self.images[i])
            if random.random() < 0.5:
                img = img.flip(-1)
            y, x = np.random.randint(0, 3, size=2)
            img = img[:, y:y + 8, x:x + 8]
            img = img + 0.1 * torch.randn(img.shape)
            return dict(inputs=img, labels=torch.tensor(int(self.labels[i])))

    class Accuracy(BaseMetric):
        def process(self, data_batch, data_samples):
            self.results += [int(p == t) for p, t in data_samples]

        def compute_metrics(self, results):
            return dict(acc=float(np.mean(results)))

    class Pause(Hook):
        """Stop at a training iteration: sleep there (so the parent can
        SIGKILL the process) or raise :class:`Crash` (in-process tests)."""

        def __init__(self, at, marker, crash):
            self.at, self.marker, self.crash = at, marker, crash

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if runner.iter == self.at:
                if self.crash:
                    raise Crash(self.at)
                open(self.marker, 'w').close()
                time.sleep(600)

    def collate(batch):
        return dict(inputs=torch.stack([b['inputs'] for b in batch]),
                    labels=torch.stack([b['labels'] for b in batch]))

    loader = dict(batch_size=8, num_workers=args.workers,
                  persistent_workers=False, collate_fn=collate)
    if args.loop == 'epoch':
        train_cfg = dict(by_epoch=True, max_epochs=3, val_interval=1)
        ckpt = dict(type='CheckpointHook', interval=1)
        sampler = dict(type='DefaultSampler', shuffle=True)
    else:
        train_cfg = dict(by_epoch=False, max_iters=24, val_interval=8)
        ckpt = dict(type='CheckpointHook', interval=8, by_epoch=False)
        sampler = dict(type='InfiniteSampler', shuffle=True)
    hooks = [] if args.no_rng_hook else [dict(type='convattn_mm.RNGStateHook')]
    if args.pause_at is not None:
        hooks.append(Pause(args.pause_at, osp.join(args.work_dir, 'paused'),
                           args.crash))
    torch.manual_seed(0)  # the model is built before the Runner seeds
    return Runner(
        model=Net(), work_dir=args.work_dir,
        train_dataloader=dict(dataset=Data(64), sampler=sampler, **loader),
        val_dataloader=dict(dataset=Data(16), **loader,
                            sampler=dict(type='DefaultSampler',
                                         shuffle=False)),
        val_evaluator=Evaluator(Accuracy()), val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05,
                                          momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[2],
                             by_epoch=args.loop == 'epoch'),
        train_cfg=train_cfg, default_hooks=dict(checkpoint=ckpt),
        custom_hooks=hooks, resume=args.resume,
        randomness=dict(seed=7, deterministic=True),
        experiment_name=f'{osp.basename(args.work_dir)}_{next(_RUN_IDS)}',
        default_scope='mmengine')


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('work_dir')
    parser.add_argument('--loop', choices=['epoch', 'iter'], default='epoch')
    parser.add_argument('--workers', type=int, default=0)
    parser.add_argument('--resume', action='store_true')
    parser.add_argument('--pause-at', type=int, default=None)
    parser.add_argument('--no-rng-hook', action='store_true')
    parser.add_argument('--crash', action='store_true',
                        help='raise at --pause-at instead of sleeping')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runner = _build_runner(args)
    runner.train()
    torch.save(runner.model.state_dict(), osp.join(args.work_dir,
                                                   'final.pth'))


# --------------------------------------------------------------------------
# helpers for the tests
# --------------------------------------------------------------------------
def _start(work_dir, *extra):
    os.makedirs(work_dir, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=ROOT)
    log = open(osp.join(work_dir, 'stderr.txt'), 'ab')
    return subprocess.Popen([sys.executable, __file__, str(work_dir), *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=log)


def _finish(proc, work_dir):
    rc = proc.wait(timeout=300)
    if rc != 0:
        with open(osp.join(work_dir, 'stderr.txt')) as f:
            raise RuntimeError(f'run in {work_dir} failed ({rc}):\n'
                               + f.read()[-3000:])
    return torch.load(osp.join(work_dir, 'final.pth'))


def _run(work_dir, *extra):
    return _finish(_start(work_dir, *extra), work_dir)


def _kill_at(proc, work_dir, pause_at):
    """SIGKILL a run started with ``--pause-at`` once it is paused there."""
    marker = osp.join(work_dir, 'paused')
    deadline = time.time() + 240
    while not osp.exists(marker):
        if proc.poll() is not None:
            raise RuntimeError(f'run ended (rc {proc.returncode}) before '
                               f'iteration {pause_at}')
        if time.time() > deadline:
            proc.kill()
            raise TimeoutError('run did not reach the pause')
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert not osp.exists(osp.join(work_dir, 'final.pth'))


def _full_and_resumed(tmp_path, pause_at, *extra):
    """Uninterrupted run and killed run side by side, then the resume."""
    full = _start(tmp_path / 'full', *extra)
    cut = _start(tmp_path / 'cut', '--pause-at', str(pause_at), *extra)
    _kill_at(cut, tmp_path / 'cut', pause_at)
    resumed = _start(tmp_path / 'cut', '--resume', *extra)
    return (_finish(full, tmp_path / 'full'),
            _finish(resumed, tmp_path / 'cut'))


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------
def test_rng_state_round_trip_is_plain():
    from convattn_mm.engine import get_rng_state, set_rng_state
    state = get_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(3), np.random.randn())
    path = osp.join(os.environ.get('TMPDIR', '/tmp'),
                    f'rng_{os.getpid()}.pth')
    torch.save(state, path)
    try:
        loaded = torch.load(path, weights_only=True)
    finally:
        os.remove(path)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    set_rng_state(loaded)
    b = (random.random(), np.random.rand(), torch.rand(3), np.random.randn())
    assert a[0] == b[0] and a[1] == b[1] and a[3] == b[3]
    assert torch.equal(a[2], b[2])


def test_hook_is_registered_and_checks_args():
    from convattn_mm.engine import RNGStateHook
    from convattn_mm.registry import HOOKS as OWN
    from mmengine.registry import HOOKS
    assert OWN.get('RNGStateHook') is RNGStateHook
    # resolves from any default scope, e.g. mmpretrain configs
    assert isinstance(HOOKS.build(dict(type='convattn_mm.RNGStateHook')),
                      RNGStateHook)
    with pytest.raises(TypeError, match='restore'):
        RNGStateHook(restore='yes')


def test_epoch_resume_after_crash_reproduces_in_process(tmp_path):
    """Fast, in one process: a run that dies in epoch 3 (after epoch 2's
    checkpoint) resumed with ``resume=True`` reaches bit-equal weights."""
    from mmengine.logging import MessageHub
    full = tmp_path / 'full'
    main([str(full)])
    cut = str(tmp_path / 'cut')
    with pytest.raises(Crash):
        main([cut, '--pause-at', '20', '--crash'])
    assert osp.exists(osp.join(cut, 'epoch_2.pth'))
    assert not osp.exists(osp.join(cut, 'epoch_3.pth'))
    main([cut, '--resume'])
    hub = MessageHub.get_current_instance()
    # the message hub came back from the plain checkpoint data
    assert len(hub.get_scalar('train/loss').data[0]) == 24
    assert _same(torch.load(full / 'final.pth'),
                 torch.load(osp.join(cut, 'final.pth')))


@pytest.mark.slow
def test_epoch_resume_after_sigkill_reproduces(tmp_path):
    """Killed with SIGKILL in epoch 3 (after epoch 2's checkpoint), resumed
    with ``resume=True`` in a new process: bit-equal final weights."""
    full, resumed = _full_and_resumed(tmp_path, 20)
    assert osp.exists(tmp_path / 'cut' / 'epoch_2.pth')
    assert _same(full, resumed)


@pytest.mark.slow
def test_resume_without_hook_differs(tmp_path):
    """Control: the same kill-and-resume without the hook does not
    reproduce (so the test above can fail)."""
    full, resumed = _full_and_resumed(tmp_path, 20, '--no-rng-hook')
    assert not _same(full, resumed)


@pytest.mark.slow
def test_iter_resume_with_workers_reproduces(tmp_path):
    """Iter-based loop (InfiniteSampler; the loop's skip replays the data
    pipeline), 2 DataLoader workers: killed at iteration 20 after the
    iteration-16 checkpoint, resumed: bit-equal weights."""
    full, resumed = _full_and_resumed(tmp_path, 20, '--loop', 'iter',
                                      '--workers', '2')
    assert osp.exists(tmp_path / 'cut' / 'iter_16.pth')
    assert _same(full, resumed)


@pytest.mark.slow
def test_iter_resume_main_process_reproduces(tmp_path):
    """Iter-based loop, augmentation in the main process: the skip on resume
    runs the pipeline again, so the state must be set after it."""
    full, resumed = _full_and_resumed(tmp_path, 12, '--loop', 'iter')
    assert osp.exists(tmp_path / 'cut' / 'iter_8.pth')
    assert _same(full, resumed)


REAL_CFG = """
_base_ = {config!r}
custom_hooks = [dict(type='convattn_mm.RNGStateHook')]
randomness = dict(seed=0, deterministic=True)
train_dataloader = dict(batch_size=16, dataset=dict(indices=128))
val_dataloader = dict(dataset=dict(indices=48))
train_cfg = dict(max_epochs=4, val_interval=1)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=-1),
                     logger=dict(interval=1))
"""


@pytest.mark.slow
def test_real_config_sigkill_resume_reproduces(tmp_path):
    """tools/train.py on the digits demo config (ConvAttnNet with drop-path,
    RandomCrop augmentation), 4 epochs of 8 iterations: SIGKILLed once epoch
    2's checkpoint is recorded, resumed with ``--resume``: the final
    checkpoint's weights equal the uninterrupted run's."""
    config = osp.join(ROOT, 'configs', 'convattn_net',
                      'convattnnet-demo_1xb64_digits.py')
    cfg = tmp_path / 'resume_cfg.py'
    cfg.write_text(REAL_CFG.format(config=config))
    train = osp.join(ROOT, 'tools', 'train.py')
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')

    def start(work, *extra):
        os.makedirs(work, exist_ok=True)
        return subprocess.Popen(
            [sys.executable, train, str(cfg), '--work-dir', str(work),
             *extra], env=env, stdout=subprocess.DEVNULL,
            stderr=open(osp.join(work, 'stderr.txt'), 'ab'), cwd=ROOT)

    def finish(proc, work):
        rc = proc.wait(timeout=600)
        with open(osp.join(work, 'stderr.txt')) as f:
            assert rc == 0, f.read()[-3000:]
        return torch.load(osp.join(work, 'epoch_4.pth'),
                          weights_only=True)['state_dict']

    full = start(tmp_path / 'full')
    cut_dir = tmp_path / 'cut'
    cut = start(cut_dir)
    last = cut_dir / 'last_checkpoint'
    deadline = time.time() + 400
    while not (last.exists() and last.read_text().strip().endswith(
            'epoch_2.pth')):
        assert cut.poll() is None, 'run ended before epoch 2 was saved'
        assert time.time() < deadline, 'epoch 2 was never saved'
        time.sleep(0.02)
    cut.send_signal(signal.SIGKILL)
    assert cut.wait(timeout=30) == -signal.SIGKILL
    assert not (cut_dir / 'epoch_4.pth').exists()
    resumed = start(cut_dir, '--resume')
    assert _same(finish(full, tmp_path / 'full'), finish(resumed, cut_dir))


if __name__ == '__main__':
    main()
