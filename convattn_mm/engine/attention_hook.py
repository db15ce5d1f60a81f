"""``AttentionStatsHook``: watch each head's distance from a convolution
during training."""
import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from convattn_mm.analysis import capture_attention, scalar_dict
from convattn_mm.analysis.measures import MEASURES
from convattn_mm.registry import HOOKS
from convattn_mm.utils import check_choice

SOURCES = ('train', 'val')


@HOOKS.register_module()
class AttentionStatsHook(Hook):
    """Every ``interval`` training iterations, run the model (eval mode, no
    gradients) on a fixed small batch inside
    :func:`~convattn_mm.analysis.capture_attention` and log the per-head
    measures (``docs/analysis.md``) through the Runner's visualiser
    backends (``runner.visualizer.add_scalars``: ``scalars.json`` of
    ``LocalVisBackend`` by default, TensorBoard when configured).

    Scalar names: ``{prefix}/{layer}/head{h}/{measure}`` and the layer mean
    ``{prefix}/{layer}/mean/{measure}``, for ``measure`` in
    ``mean_distance``, ``content_dependence``, ``conv_distance``,
    ``peak_mass``.

    Args:
        interval (int): iterations between two measurements.
        num_images (int): images of the fixed batch (the first ones of the
            dataset).
        source (str): ``'val'`` (default; falls back to the training set
            when the run has no validation loader) or ``'train'``.
        layers: attention layers (see
            :func:`~convattn_mm.analysis.select_layers`); default all.
        queries: per-layer queries (see :func:`capture_attention`); default
            8 evenly spaced per axis.
        measures (tuple[str]): which measures to log.
        per_head (bool): log every head (else only the layer means).
        log_at_start (bool): also measure the initial model (at the
            iteration training starts from: 0, or the resumed one).
        prefix (str): scalar name prefix.

    Example (config)::

        custom_hooks = [dict(type='convattn_mm.AttentionStatsHook',
                             interval=200)]

    The batch is drawn with the random states of ``random``, numpy and
    torch saved and restored, so the hook does not change the training run.
    """
    priority = 'LOW'

    def __init__(self, interval=500, num_images=8, source='val',
                 layers=None, queries=8, measures=MEASURES, per_head=True,
                 log_at_start=True, prefix='attention'):
        if isinstance(interval, bool) or not isinstance(interval, int) \
                or interval < 1:
            raise ValueError(f'interval={interval!r} must be an int >= 1')
        if isinstance(num_images, bool) or not isinstance(
                num_images, int) or num_images < 1:
            raise ValueError(f'num_images={num_images!r} must be an int '
                             f'>= 1')
        check_choice(source, SOURCES, 'source')
        bad = [m for m in measures if m not in MEASURES]
        if bad:
            raise ValueError(f'measures={tuple(measures)!r}: unknown {bad}; '
                             f'choose from {sorted(MEASURES)}')
        self.interval, self.num_images, self.source = (interval, num_images,
                                                       source)
        self.layers, self.queries = layers, queries
        self.measures, self.per_head = tuple(measures), per_head
        self.log_at_start, self.prefix = log_at_start, prefix
        self._batch = None

    # ------------------------------------------------------------- batch
    def _dataloader(self, runner):
        if self.source == 'val':
            try:
                return runner.val_dataloader
            except Exception:  # no validation configured
                print_log('AttentionStatsHook: no val dataloader, using '
                          'the training set', logger='current')
        return runner.train_dataloader

    def _fixed_batch(self, runner):
        if self._batch is None:
            loader = self._dataloader(runner)
            dataset = loader.dataset
            n = min(self.num_images, len(dataset))
            states = (random.getstate(), np.random.get_state(),
                      torch.get_rng_state())
            try:
                samples = [dataset[i] for i in range(n)]
            finally:
                random.setstate(states[0])
                np.random.set_state(states[1])
                torch.set_rng_state(states[2])
            self._batch = loader.collate_fn(samples)
        return self._batch

    # ---------------------------------------------------------- measuring
    def measure(self, runner):
        """Run the capture on the fixed batch; returns ``{layer:
        head_measures}``."""
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        data = model.data_preprocessor(self._fixed_batch(runner), False)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), capture_attention(
                    model, layers=self.layers, queries=self.queries) as cap:
                if isinstance(data, dict):
                    model(**data, mode='tensor')
                else:
                    model(data, mode='tensor')
            return cap.measures()
        finally:
            model.train(was_training)

    def _log(self, runner, step):
        measures = self.measure(runner)
        scalars = scalar_dict(measures, self.prefix)
        keep = {}
        for name, value in scalars.items():
            measure = name.rsplit('/', 1)[-1]
            if measure not in self.measures:
                continue
            if not self.per_head and '/mean/' not in name:
                continue
            keep[name] = value
        runner.visualizer.add_scalars(keep, step=step)

    def before_train(self, runner):
        if self.log_at_start:
            self._log(runner, runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if self.every_n_train_iters(runner, self.interval):
            self._log(runner, runner.iter + 1)
