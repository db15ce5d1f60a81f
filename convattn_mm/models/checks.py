"""Checks that turn the commonest downstream mistakes into clear errors.

* :func:`check_pretrained_cfg` (build time): a ``Pretrained`` init with no
  checkpoint, or one naming a local file that does not exist, raises before
  the rest of the model is built, saying how to set it.
* :func:`watch_pretrained` (load time): a load-state-dict pre-hook on a
  backbone. When a checkpoint gives the backbone keys but fewer than
  :data:`MIN_MATCHED` of the backbone's own keys are among them (a
  torchvision ResNet into ``SAResNet``, a classifier checkpoint without
  ``prefix='backbone.'``), loading raises ``ValueError`` naming the missing
  and unexpected key prefixes and how to convert the checkpoint, where
  mmengine's ``Pretrained`` init would only log a warning and train from
  random weights. A convolution's ``weight``/``bias`` count as the keys of
  the ``ConvAttention`` that replaced it (it loads them).
* :func:`declare_channels` / the module-registration check: a backbone
  declares ``stage_channels`` (every stage) and ``out_channels`` (the maps it
  returns, in ``out_indices`` order). When a model that holds such a backbone
  as ``backbone`` then registers a ``neck`` (or, with no neck, a ``head``)
  whose ``in_channels`` disagree, the build fails with the right channels
  instead of a conv shape error at the first forward. This is a
  process-wide ``torch.nn.Module`` registration hook, installed on the first
  ``declare_channels`` call; it looks only at models whose ``backbone``
  declares channels.
"""
import os.path as osp
from collections import Counter

import torch.nn as nn

from .layers import ConvAttention

#: smallest fraction of a backbone's own keys a checkpoint must supply
MIN_MATCHED = 0.5
CHECKPOINT_OPTION = 'model.backbone.init_cfg.checkpoint'


def _pretrained_cfgs(init_cfg):
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    return [c for c in cfgs
            if isinstance(c, dict) and c.get('type') == 'Pretrained']


def check_pretrained_cfg(init_cfg, owner, hint=''):
    """Raise ``ValueError`` when a ``Pretrained`` entry of ``init_cfg`` has
    no ``checkpoint`` or names a local file that does not exist.

    Args:
        init_cfg (dict | list | None): a module's ``init_cfg``.
        owner (str): the module's name, for the message.
        hint (str): what checkpoint the module expects.
    """
    for cfg in _pretrained_cfgs(init_cfg):
        ckpt = cfg.get('checkpoint')
        how = (f"pass --cfg-options {CHECKPOINT_OPTION}=/path/to/file.pth, "
               f"or train from scratch with --cfg-options "
               f"model.backbone.init_cfg=None")
        if ckpt in (None, ''):
            raise ValueError(
                f'{owner}: init_cfg=Pretrained needs a checkpoint and none '
                f'is set (checkpoint={ckpt!r}). {hint}{" " if hint else ""}'
                f'To set it, {how}.')
        if (isinstance(ckpt, str) and '://' not in ckpt
                and not osp.isfile(osp.expanduser(ckpt))):
            raise ValueError(
                f'{owner}: init_cfg.checkpoint={ckpt!r} is not a file '
                f'(relative paths are taken from the current directory, '
                f'{osp.abspath(".")!r}). {hint}{" " if hint else ""}To fix '
                f'it, {how}.')


def _prefixes(keys, depth=2, limit=6):
    counts = Counter('.'.join(k.split('.')[:-1][:depth]) or k for k in keys)
    items = [f'{p}.* ({n})' for p, n in sorted(counts.items())]
    more = len(items) - limit
    return ', '.join(items[:limit]) + (f', ... {more} more' if more > 0
                                       else '') if items else 'none'


def conv_aliases(module):
    """``{conv key: own key}``: the convolution keys each
    :class:`ConvAttention` of ``module`` loads (``X.weight`` ->
    ``X.proj.weight``, ``X.bias`` -> ``X.proj.bias``)."""
    out = {}
    for name, m in module.named_modules():
        if isinstance(m, ConvAttention):
            p = name + '.' if name else ''
            out[p + 'weight'] = p + 'proj.weight'
            out[p + 'bias'] = p + 'proj.bias'
    return out


def match_keys(module, keys):
    """``(matched, missing, unexpected)`` of checkpoint ``keys`` (already
    relative to ``module``) against ``module``'s state-dict keys."""
    own = set(module.state_dict().keys())
    aliases = conv_aliases(module)
    given = {aliases.get(k, k) for k in keys}
    unexpected = sorted(k for k in keys if aliases.get(k, k) not in own)
    matched = own & given
    # a converted conv's table is set from the conv's keys, so not missing
    for conv_key, own_key in aliases.items():
        if own_key.endswith('proj.weight') and own_key in matched:
            table = own_key[:-len('proj.weight')] + 'pos_encoding.table'
            if table in own:
                matched.add(table)
    missing = sorted(own - matched)
    return matched, missing, unexpected


class PretrainedKeysCheck:
    """Load-state-dict pre-hook of :func:`watch_pretrained`."""

    def __init__(self, owner, hint=''):
        self.owner, self.hint = owner, hint

    def __call__(self, module, state_dict, prefix, *args):
        keys = [k[len(prefix):] for k in state_dict if k.startswith(prefix)]
        if not keys:
            return  # nothing for this module (e.g. a head-only checkpoint)
        own = module.state_dict()
        matched, missing, unexpected = match_keys(module, keys)
        if len(matched) >= MIN_MATCHED * len(own):
            return
        where = f' under {prefix!r}' if prefix else ''
        fix = []
        for head in ('backbone.', 'module.backbone.'):
            inner = [k[len(head):] for k in keys if k.startswith(head)]
            if inner and len(match_keys(module, inner)[0]) >= \
                    MIN_MATCHED * len(own):
                fix.append(f"the checkpoint's backbone keys start with "
                           f"{head!r}: set prefix={head!r} in init_cfg "
                           f"(--cfg-options model.backbone.init_cfg.prefix="
                           f"{head})")
        if self.hint:
            fix.append(self.hint)
        raise ValueError(
            f'{self.owner}: the checkpoint{where} matches {len(matched)} of '
            f'its {len(own)} keys (needs {MIN_MATCHED:.0%}); it is not '
            f'weights for this model. Missing: {_prefixes(missing)}. '
            f'Unexpected: {_prefixes(unexpected)}. '
            + ('; '.join(f.rstrip('.') for f in fix) + '.' if fix else ''))


def watch_pretrained(module, init_cfg, hint=''):
    """Check ``init_cfg`` now (:func:`check_pretrained_cfg`) and every later
    load into ``module`` (:class:`PretrainedKeysCheck`)."""
    owner = type(module).__name__
    if hint and not hint.endswith('.'):
        hint += '.'
    check_pretrained_cfg(init_cfg, owner, hint)
    module.register_load_state_dict_pre_hook(PretrainedKeysCheck(owner,
                                                                 hint))


# ---------------------------------------------------------------- channels
_HOOK = []


def declare_channels(backbone, stage_channels, out_indices=None):
    """Set ``backbone.stage_channels`` (tuple, every stage) and
    ``backbone.out_channels`` (tuple, the returned maps in ``out_indices``
    order; default ``backbone.out_indices``), and make sure the build-time
    channel check is installed."""
    if out_indices is None:
        out_indices = backbone.out_indices
    backbone.stage_channels = tuple(int(c) for c in stage_channels)
    backbone.out_channels = tuple(backbone.stage_channels[i]
                                  for i in out_indices)
    if not _HOOK:
        _HOOK.append(nn.modules.module.register_module_module_registration_hook(
            _check_consumer_channels))


def _in_channels(module):
    c = getattr(module, 'in_channels', None)
    if isinstance(c, int) and not isinstance(c, bool):
        return c
    if isinstance(c, (list, tuple)) and c and all(
            isinstance(v, int) for v in c):
        return tuple(c)
    return None


def _outs(backbone):
    idx = getattr(backbone, 'out_indices', None)
    return f' with out_indices={list(idx)}' if idx is not None else ''


def _check_consumer_channels(parent, name, child):
    """Registration hook: ``parent.<name> = child`` where ``parent.backbone``
    declares channels and ``child`` is what reads its maps."""
    if name not in ('neck', 'head') or child is None:
        return None
    backbone = parent._modules.get('backbone')
    if backbone is None or getattr(backbone, 'stage_channels', None) is None:
        return None
    declared = backbone.out_channels
    if name == 'head' and parent._modules.get('neck') is not None:
        return None
    got = _in_channels(child)
    if got is None:
        return None
    kind = type(backbone).__name__
    if isinstance(got, tuple):
        if got != tuple(declared):
            raise ValueError(
                f'{name}.in_channels={list(got)} does not match the '
                f'backbone: {kind}{_outs(backbone)} returns maps of '
                f'{list(declared)} channels (every stage: '
                f'{list(backbone.stage_channels)}); set '
                f'model.{name}.in_channels={list(declared)}')
    elif got != declared[-1]:
        raise ValueError(
            f'{name}.in_channels={got} does not match the backbone: '
            f'{kind}{_outs(backbone)} returns maps of '
            f'{list(declared)} channels and the {name} reads the last one; '
            f'set model.{name}.in_channels={declared[-1]}')
    return None
