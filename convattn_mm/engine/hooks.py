"""Hooks that make a resumed run reproduce an uninterrupted one."""
import logging
import random

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import BaseLoop, IterBasedTrainLoop

from convattn_mm.registry import HOOKS

KEY = 'rng_state'


def get_rng_state():
    """This process's RNG states as plain data (loads with
    ``weights_only=True``).

    Returns:
        dict: ``python`` (``random.getstate()``: tuples of ints), ``numpy``
        (MT19937 key as an int64 tensor [624] + position and Gaussian cache),
        ``torch`` (uint8 tensor) and ``cuda`` (list of uint8 tensors, one per
        visible device; empty without CUDA).
    """
    kind, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return dict(
        python=random.getstate(),
        numpy=dict(kind=str(kind),
                   key=torch.from_numpy(key.astype(np.int64)),
                   pos=int(pos), has_gauss=int(has_gauss),
                   gauss=float(gauss)),
        torch=torch.get_rng_state(),
        cuda=(torch.cuda.get_rng_state_all()
              if torch.cuda.is_available() else []))


def set_rng_state(state):
    """Inverse of :func:`get_rng_state`. CUDA states are restored when the
    number of visible devices matches (else they are left as they are)."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    n = state['numpy']
    np.random.set_state((n['kind'], np.asarray(n['key']).astype(np.uint32),
                         n['pos'], n['has_gauss'], n['gauss']))
    torch.set_rng_state(state['torch'])
    cuda = state.get('cuda') or []
    if cuda and torch.cuda.is_available() and \
            len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class _RestoreAfterSkip:
    """Wraps an iter-based loop's data iterator: after the loop has skipped
    the ``skip`` batches already trained, sets the saved RNG state before the
    next batch is drawn, then takes itself out of the loop."""

    def __init__(self, loop, skip, state):
        self.loop, self.inner, self.skip, self.state = \
            loop, loop.dataloader_iterator, skip, state
        self.count = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.count == self.skip:
            set_rng_state(self.state)
            self.loop.dataloader_iterator = self.inner
        self.count += 1
        return next(self.inner)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save python ``random``, numpy, torch CPU and CUDA RNG states in each
    checkpoint and restore them on ``resume``, so that a run resumed from a
    checkpoint draws the same random numbers (augmentation in the main
    process, drop-path, dropout, DataLoader worker base seeds) as the
    uninterrupted run.

    What else reproduction needs, and what this hook does about it:

    - sampler order: mmengine's ``DefaultSampler`` reshuffles from
      ``seed + epoch`` and ``InfiniteSampler`` is replayed by the iter-based
      loop's skip: both deterministic already.
    - DataLoader workers: mmengine's ``worker_init_fn`` seeds each worker
      from ``(seed, rank, worker_id)``, torch's default from the main
      process's RNG (restored here): reproducible with
      ``persistent_workers=False``. Persistent workers keep RNG state that
      no checkpoint holds; the hook warns when resuming with them.
    - validation between a checkpoint and the next training epoch would
      consume the training RNG; the hook saves the RNG state before each
      validation run and restores it after, so validation leaves training
      randomness untouched (and ``val_interval`` does not change training).
    - where to restore: epoch-based loops at ``before_train`` (checkpoints
      at epoch ends: mmengine restarts a half-done epoch from its start);
      iter-based loops after the loop has skipped the batches already
      trained (that skip runs the data pipeline again).
    - distributed: each rank's state is gathered at every training
      iteration end (one small ``all_gather_object``), rank 0 saves all, and
      each rank restores its own (rank 0's when the world size changed).

    Args:
        restore (bool): restore the states on resume. Defaults to True.
        neutral_val (bool): keep validation from consuming the training RNG.
            Defaults to True.
    """

    priority = 'VERY_HIGH'

    def __init__(self, restore=True, neutral_val=True):
        if not isinstance(restore, bool):
            raise TypeError(f'restore must be a bool, got {restore!r}')
        if not isinstance(neutral_val, bool):
            raise TypeError(f'neutral_val must be a bool, got {neutral_val!r}')
        self.restore = restore
        self.neutral_val = neutral_val
        self._pending = None
        self._gathered = None
        self._val_state = None

    # -- saving --------------------------------------------------------------
    def _gather(self, runner):
        _, world = get_dist_info()
        if world > 1:
            self._gathered = all_gather_object(get_rng_state())

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self._gather(runner)

    def before_save_checkpoint(self, runner, checkpoint):
        rank, world = get_dist_info()
        states = self._gathered if (world > 1 and self._gathered) else None
        if states is None:
            states = [get_rng_state()]
        checkpoint[KEY] = dict(world_size=len(states), ranks=states)

    # -- restoring -----------------------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint):
        self._pending = None
        if not self.restore or not getattr(runner, '_resume', False):
            return  # load_from (fine-tuning): keep this run's own RNG
        saved = checkpoint.get(KEY)
        if saved is None:
            print_log('RNGStateHook: the checkpoint holds no RNG state; the '
                      'resumed run will not reproduce the uninterrupted one',
                      logger='current', level=logging.WARNING)
            return
        rank, world = get_dist_info()
        states = saved['ranks']
        if len(states) != world:
            print_log(f'RNGStateHook: checkpoint written by {len(states)} '
                      f'ranks, resuming on {world}; every rank takes rank '
                      "0's RNG state", logger='current',
                      level=logging.WARNING)
            rank = 0
        self._pending = states[rank]

    def before_train(self, runner):
        if self._pending is None:
            return
        loader = runner.train_dataloader
        if getattr(loader, 'persistent_workers', False) and \
                getattr(loader, 'num_workers', 0) > 0:
            print_log('RNGStateHook: persistent DataLoader workers keep RNG '
                      'state no checkpoint holds; set persistent_workers='
                      'False for a resumed run that reproduces the '
                      'uninterrupted one', logger='current',
                      level=logging.WARNING)
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop) and loop.iter > 0:
            loop.dataloader_iterator = _RestoreAfterSkip(
                loop, loop.iter, self._pending)
        else:
            set_rng_state(self._pending)
        self._pending = None

    # -- validation leaves training randomness alone -----------------------
    def before_val(self, runner):
        # only inside training (runner.val() alone has no loop built)
        if self.neutral_val and isinstance(
                getattr(runner, '_train_loop', None), BaseLoop):
            self._val_state = get_rng_state()

    def after_val(self, runner):
        if self._val_state is not None:
            set_rng_state(self._val_state)
            self._val_state = None
