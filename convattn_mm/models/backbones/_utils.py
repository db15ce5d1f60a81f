"""Checks and conventions shared by the backbones (one place each).

* ``arch``: a preset name from ``arch_zoo`` or a dict with exactly the keys
  the backbone declares (:func:`resolve_arch`).
* ``out_indices``: ints in ``[-num_stages, num_stages)``; negatives count
  from the end; normalised into a sorted tuple without touching the input
  (:func:`normalise_out_indices`).
* ``frozen_stages``: ``-1`` freezes nothing, ``0`` the stem, ``k >= 1`` the
  stem and the first ``k`` stages (:func:`check_frozen_stages`).
* per-stage / per-block config dicts (``stage_cfgs``, ``block_cfgs``,
  ``layer_cfgs``): merged over the defaults the backbone derives from its
  other arguments; a key must be an argument of the block's constructor
  that the backbone does not fix (:func:`block_options`,
  :func:`merge_cfgs`, :func:`merge_stage_cfgs`), so a new block option is
  one edit: the block's signature.
* checkpoints: ``_version`` and ``_load_from_state_dict``
  (:class:`VersionedStateDictMixin`).
"""
import copy
import inspect
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


def block_options(block_type, fixed=()):
    """Sorted names of ``block_type``'s constructor arguments that a
    stage / block config may set: all but ``fixed`` (what the backbone
    derives from its arch, e.g. the width)."""
    params = inspect.signature(block_type.__init__).parameters
    return tuple(sorted(
        n for n, p in params.items()
        if n != 'self' and n not in fixed and p.kind not in (
            p.VAR_POSITIONAL, p.VAR_KEYWORD)))


def _check_cfg(cfg, allowed, name):
    if not isinstance(cfg, dict):
        raise TypeError(f'{name}={cfg!r} must be a dict')
    for key in sorted(cfg):
        if key not in allowed:
            raise ValueError(f'{name}: unknown key {key!r}; allowed keys '
                             f'{sorted(allowed)}')


def _per_item(cfgs, num, name):
    """``cfgs`` as a list of ``num`` dicts: None (no overrides), one dict
    for every item, or a list / tuple with one dict per item."""
    if cfgs is None:
        return [{} for _ in range(num)]
    if isinstance(cfgs, dict):
        return [copy.deepcopy(cfgs) for _ in range(num)]
    if isinstance(cfgs, (list, tuple)):
        if len(cfgs) != num:
            raise ValueError(f'{name} has {len(cfgs)} entries; expected one '
                             f'dict for all or one per entry ({num})')
        return [copy.deepcopy(c) for c in cfgs]
    raise TypeError(f'{name} must be None, a dict or a list of dicts, got '
                    f'{type(cfgs).__name__}')


def check_dilations(dilations):
    """``dilations`` (an int or a non-empty sequence of ints >= 1, cycled
    over the blocks) as a tuple, else ValueError naming it."""
    if isinstance(dilations, int):
        dilations = (dilations, )
    if not dilations or not all(
            isinstance(d, int) and d >= 1 for d in dilations):
        raise ValueError(f'dilations={dilations!r} must be positive ints')
    return tuple(dilations)


def merge_cfgs(defaults, cfgs, allowed, name):
    """One kwargs dict per item: ``defaults[i]`` updated by the config of
    item ``i`` (``cfgs``: None, one dict for all, or one per item).

    Raises:
        ValueError: a key outside ``allowed`` (named, with the allowed
        keys), or a list of the wrong length.
    """
    cfgs = _per_item(cfgs, len(defaults), name)
    out = []
    for i, (default, cfg) in enumerate(zip(defaults, cfgs)):
        _check_cfg(cfg, allowed, f'{name}[{i}]')
        out.append({**default, **cfg})
    return out


def merge_stage_cfgs(defaults, stage_cfgs, allowed, name='stage_cfgs'):
    """Per-block kwargs of every stage, mmpretrain's ``stage_cfgs``.

    Args:
        defaults: per stage, a list of per-block kwargs dicts.
        stage_cfgs: None, one dict for every stage, or one per stage. A
            stage dict sets block options for all blocks of the stage and
            may hold ``block_cfgs`` (one dict for all its blocks or one per
            block) for single blocks.
        allowed: the block options (:func:`block_options`).
    Returns:
        per stage, a list of per-block kwargs dicts.
    """
    stage_cfgs = _per_item(stage_cfgs, len(defaults), name)
    out = []
    for i, (blocks, cfg) in enumerate(zip(defaults, stage_cfgs)):
        _check_cfg(cfg, tuple(allowed) + ('block_cfgs', ), f'{name}[{i}]')
        cfg = dict(cfg)
        block_cfgs = cfg.pop('block_cfgs', None)
        blocks = [{**b, **copy.deepcopy(cfg)} for b in blocks]
        out.append(merge_cfgs(blocks, block_cfgs, allowed,
                              f'{name}[{i}].block_cfgs'))
    return out


class VersionedStateDictMixin:
    """mmpretrain's checkpoint versioning, written once.

    ``_version`` numbers the backbone's state-dict key layout; torch stores
    it in a state dict's metadata. Loading a state dict of an older version
    (or one without metadata: version 1, the layout before versioning) runs
    :meth:`_upgrade_state_dict` first; a newer one is refused. Bump
    ``_version`` and extend :meth:`_upgrade_state_dict` whenever a key
    layout changes.
    """
    _version = 1

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              *args, **kwargs):
        version = local_metadata.get('version') or 1
        if version > self._version:
            raise ValueError(
                f'{type(self).__name__} checkpoint version {version} is '
                f'newer than this code\'s ({self._version}): update '
                f'convattn_mm to load it')
        if version < self._version:
            self._upgrade_state_dict(state_dict, prefix, version)
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      *args, **kwargs)

    def _upgrade_state_dict(self, state_dict, prefix, version):
        """Rewrite, in place, the keys under ``prefix`` of a state dict
        written at ``version`` into today's layout (no layout change yet:
        nothing to do)."""
