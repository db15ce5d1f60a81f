"""``ConvToAttention``: a config-level "this network, with its convolutions
as attention".

It is a registered *builder* (a function in ``MODELS``): it builds the
wrapped module from its config in the caller's scope, then replaces the
selected convolutions with :class:`ConvAttention` layers through
:func:`convattn_mm.convert.convert_model`. The result is the wrapped class
itself (e.g. mmpretrain's ``ImageClassifier``), so state-dict keys are the
original ones, with each converted conv's ``weight``/``bias`` replaced by the
attention layer's ``proj.*`` and ``pos_encoding.*`` (and ``qk.*``,
``gate``). A checkpoint written by ``tools/convert_cnn.py`` loads into it
strictly.

Example (an mmengine config)::

    model = dict(
        type='convattn_mm.ConvToAttention',
        module=dict(type='mmpretrain.ImageClassifier',
                    backbone=dict(type='mmpretrain.ResNet', depth=18), ...),
        init='exact')            # or 'quadratic' / 'gated'

The conversion runs on the freshly built (randomly initialised) weights, so
the layers start as attention copies of those convs; load the converted
checkpoint (``load_from``) to start from the trained network.
"""
import copy

import torch.nn as nn
from mmengine.registry import MODELS as ROOT_MODELS

from convattn_mm.registry import MODELS

from .model import convert_model


@MODELS.register_module()
def ConvToAttention(module, data_preprocessor=None, **convert_args):
    """Build ``module`` (config dict or ``nn.Module``) and convert it.

    Args:
        module (dict | nn.Module): the network; a dict is built with
            mmengine's root ``MODELS`` under the current default scope.
        data_preprocessor (dict, optional): set on ``module`` when its config
            has none (mmengine's Runner passes the config's top-level one).
        **convert_args: :func:`convattn_mm.convert.convert_model` arguments
            (``init``, ``select``, ``types``, ``qk_dims``, ...).

    Returns:
        the converted module (its own class).
    """
    if isinstance(module, dict):
        cfg = copy.deepcopy(dict(module))
        if data_preprocessor is not None:
            cfg.setdefault('data_preprocessor', data_preprocessor)
        net = ROOT_MODELS.build(cfg)
    elif isinstance(module, nn.Module):
        net = module
    else:
        raise TypeError(f'module={type(module).__name__}: expected a config '
                        f'dict or an nn.Module')
    convert_model(net, **convert_args)
    return net
