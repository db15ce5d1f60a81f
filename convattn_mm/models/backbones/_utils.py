"""Checks and conventions shared by the backbones (one place each).

* ``arch``: a preset name from ``arch_zoo`` or a dict with exactly the keys
  the backbone declares (:func:`resolve_arch`).
* ``out_indices``: ints in ``[-num_stages, num_stages)``; negatives count
  from the end; normalised into a sorted tuple without touching the input
  (:func:`normalise_out_indices`).
* ``frozen_stages``: ``-1`` freezes nothing, ``0`` the stem, ``k >= 1`` the
  stem and the first ``k`` stages (:func:`check_frozen_stages`).
"""
import copy
from typing import Sequence

import torch.utils.checkpoint as cp
from torch.nn.modules.batchnorm import _BatchNorm


def resolve_arch(arch, arch_zoo, keys, name='arch'):
    """A copy of the arch settings: the preset ``arch_zoo[arch]`` or the
    custom dict ``arch``, which must have exactly ``keys``."""
    if isinstance(arch, str):
        key = arch.lower()
        if key not in arch_zoo:
            raise KeyError(f'{name}={arch!r} is not a preset; choose one of '
                           f'{sorted(arch_zoo)} or pass a dict with keys '
                           f'{sorted(keys)}')
        return copy.deepcopy(arch_zoo[key])
    if not isinstance(arch, dict):
        raise TypeError(f'{name} must be a preset name or a dict, got '
                        f'{type(arch).__name__}')
    missing = sorted(set(keys) - set(arch))
    extra = sorted(set(arch) - set(keys))
    if missing or extra:
        raise KeyError(f'custom {name} dict: missing keys {missing}, unknown '
                       f'keys {extra}; the keys are exactly {sorted(keys)}')
    return copy.deepcopy(dict(arch))


def per_stage(value, num_stages, name):
    """Broadcast a scalar (or dict / None) to a list of ``num_stages``; a
    list or tuple must have exactly ``num_stages`` entries."""
    if isinstance(value, (list, tuple)):
        if len(value) != num_stages:
            raise ValueError(f'{name}={value!r} has {len(value)} entries; '
                             f'expected one per stage ({num_stages})')
        return list(value)
    return [copy.deepcopy(value) for _ in range(num_stages)]


def normalise_out_indices(out_indices, num_stages, name='out_indices'):
    """Sorted tuple of stage indices in ``[0, num_stages)``."""
    if isinstance(out_indices, int):
        out_indices = [out_indices]
    if not isinstance(out_indices, Sequence) or not out_indices:
        raise TypeError(f'{name} must be an int or a non-empty sequence of '
                        f'ints, got {out_indices!r}')
    out = []
    for i in out_indices:
        if not isinstance(i, int) or isinstance(i, bool):
            raise TypeError(f'{name}={out_indices!r}: entries must be ints')
        if not -num_stages <= i < num_stages:
            raise ValueError(
                f'{name}={out_indices!r}: index {i} is out of range; allowed '
                f'[{-num_stages}, {num_stages - 1}] ({num_stages} stages)')
        out.append(i % num_stages)
    if len(set(out)) != len(out):
        raise ValueError(f'{name}={out_indices!r} names a stage twice')
    return tuple(sorted(out))


def check_frozen_stages(frozen_stages, num_stages):
    if (not isinstance(frozen_stages, int) or isinstance(frozen_stages, bool)
            or not -1 <= frozen_stages <= num_stages):
        raise ValueError(
            f'frozen_stages={frozen_stages!r} is out of range; allowed '
            f'-1 (none), 0 (stem) .. {num_stages} (stem and all stages)')
    return frozen_stages


def freeze(module):
    """Eval mode and no gradients for ``module`` (None is ignored)."""
    if module is None:
        return
    module.eval()
    for p in module.parameters():
        p.requires_grad = False


def set_norm_eval(module):
    """Put every BatchNorm of ``module`` in eval mode (``norm_eval``)."""
    for m in module.modules():
        if isinstance(m, _BatchNorm):
            m.eval()


class FrozenStagesMixin:
    """mmpretrain's habit, written once: ``train()`` re-applies
    ``_freeze_stages()`` and ``norm_eval`` after switching modes."""

    def train(self, mode=True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            set_norm_eval(self)
        return self


def run_block(block, x, with_cp):
    """``block(x)``, through activation checkpointing when ``with_cp`` and
    gradients are needed."""
    if with_cp and x.requires_grad and block.training:
        return cp.checkpoint(block, x, use_reentrant=False)
    return block(x)


def sequential_layer_depth(param_name, prefix, block_ids, num_layers):
    """``(layer_id, num_layers + 2)`` for layer-wise lr decay.

    ``block_ids`` maps a parameter-name prefix (after ``prefix``) to its
    layer id (0 = stem, 1..num_layers = blocks in order); parameters of the
    backbone matched by none (final norms) get ``num_layers + 1``, and names
    outside the backbone (the head) ``num_layers + 1`` as well.
    """
    if not param_name.startswith(prefix):
        return num_layers + 1, num_layers + 2
    name = param_name[len(prefix):]
    best = None
    for key, layer_id in block_ids.items():
        if (name == key or name.startswith(key + '.')) and (
                best is None or len(key) > len(best[0])):
            best = (key, layer_id)
    layer_id = num_layers + 1 if best is None else best[1]
    return layer_id, num_layers + 2
