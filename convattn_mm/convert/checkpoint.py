"""Checkpoints in and out of the converter.

Layouts read by :func:`load_cnn_state_dict`:

* ``'mmengine'``: a dict with ``state_dict`` (and ``meta``, ...), as written
  by mmengine's ``save_checkpoint`` / Runner and by mmpretrain's released
  ResNets (keys ``backbone.*``, ``head.fc.*``);
* ``'state_dict'``: a bare state dict in the model's own key layout;
* ``'torchvision'``: torchvision's ResNet files (keys ``conv1.weight``,
  ``bn1.*``, ``layer1.0.conv1.weight``, ``fc.weight``), mapped onto
  mmpretrain's ``ImageClassifier(ResNet, LinearClsHead)`` keys: ``backbone.``
  prefix, ``fc.`` -> ``head.fc.`` (mmpretrain's ``ResNet`` with
  ``style='pytorch'`` is torchvision's v1.5 ResNet, module for module).

Loading uses ``torch.load(weights_only=True)`` with the package's one
allow-list (:func:`convattn_mm.compat.checkpoints.safe_globals`: numpy
scalars, arrays and dtypes, ``Counter``); a checkpoint that needs more (a Runner checkpoint's message-hub
buffers) is refused unless ``trust=True`` (the caller vouches for the file).
"""
import pickle
from collections import OrderedDict

import torch
from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu

from convattn_mm.compat.checkpoints import read_weights_only
from convattn_mm.utils import check_choice

LAYOUTS = ('mmengine', 'state_dict', 'torchvision')
_TV_MARKERS = ('conv1.weight', 'bn1.weight', 'layer1.0.conv1.weight',
               'fc.weight')


def read_checkpoint(path, trust=False):
    """``torch.load`` on the CPU, weights-only unless ``trust``."""
    if trust:
        return torch.load(path, map_location='cpu', weights_only=False)
    try:
        return read_weights_only(path)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f'checkpoint {path!r} holds objects other than tensors, numpy '
            f'scalars and plain containers (e.g. an mmengine Runner '
            f'checkpoint\'s message hub), so it will not load with '
            f'weights_only=True. If you trust its source, pass trust=True '
            f'(tools/convert_cnn.py: --trust-checkpoint). Details: '
            f'{str(e).splitlines()[0]}') from None


def detect_layout(obj):
    """The layout name of a loaded checkpoint object (see module doc)."""
    if not isinstance(obj, dict):
        raise TypeError(f'checkpoint is a {type(obj).__name__}: expected a '
                        f'dict (a state dict or one with a "state_dict" key)')
    if 'state_dict' in obj and isinstance(obj['state_dict'], dict):
        return 'mmengine'
    if all(k in obj for k in _TV_MARKERS) and not any(
            k.startswith('backbone.') for k in obj):
        return 'torchvision'
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return 'state_dict'
    raise ValueError(f'checkpoint layout not recognised (keys: '
                     f'{sorted(obj)[:8]}...); expected one of '
                     f'{sorted(LAYOUTS)}')


def torchvision_to_mmpretrain(state_dict):
    """torchvision ResNet keys -> mmpretrain ``ImageClassifier`` keys."""
    out = OrderedDict()
    for k, v in state_dict.items():
        if k.startswith('fc.'):
            out['head.' + k] = v
        else:
            out['backbone.' + k] = v
    return out


def load_cnn_state_dict(path, layout='auto', trust=False):
    """Read a CNN checkpoint into the model's state-dict layout.

    Args:
        path (str): checkpoint file.
        layout (str): ``'auto'`` or one of ``'mmengine'``, ``'state_dict'``,
            ``'torchvision'``.
        trust (bool): allow arbitrary pickles (trusted sources only).

    Returns:
        ``(state_dict, layout)``; ``module.`` prefixes (DataParallel) are
        stripped.
    """
    check_choice(layout, LAYOUTS, 'layout', extra=('auto', ))
    obj = read_checkpoint(path, trust)
    found = detect_layout(obj)
    if layout == 'auto':
        layout = found
    sd = obj['state_dict'] if found == 'mmengine' else obj
    sd = OrderedDict((k[7:] if k.startswith('module.') else k, v)
                     for k, v in sd.items())
    if layout == 'torchvision':
        sd = torchvision_to_mmpretrain(sd)
    return sd, layout


def save_converted(model, path, meta=None):
    """Write ``{'meta', 'state_dict'}`` with mmengine's ``save_checkpoint``
    (plain tensors and dicts: loads with ``weights_only=True``)."""
    save_checkpoint(
        dict(meta=dict(meta or {}),
             state_dict=weights_to_cpu(model.state_dict())), path)
