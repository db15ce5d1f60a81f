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
the layers start as attention copies of those convs. To start from a
trained CNN, give the wrapped module a ``Pretrained`` init with the *CNN's*
checkpoint (or set ``load_from``): each converted layer loads its conv's
``weight``/``bias`` keys itself (``ConvAttention._load_from_state_dict``),
so the network computes what the CNN computes. Checkpoints written by
``tools/convert_cnn.py`` load too. A ``Pretrained`` init without a
checkpoint, or with one whose keys do not fit, is an error
(:mod:`convattn_mm.models.checks`)::

    backbone=dict(
        type='convattn_mm.ConvToAttention', init='exact',
        module=dict(type='mmdet.ResNet', depth=50, ...,
                    init_cfg=dict(type='Pretrained',
                                  checkpoint='resnet50.pth')))
"""
import copy

import torch.nn as nn
from mmengine.registry import MODELS as ROOT_MODELS

from convattn_mm.models.checks import check_pretrained_cfg, watch_pretrained
from convattn_mm.registry import MODELS

from .model import convert_model


PRETRAINED_HINT = (
    "The wrapped CNN's own checkpoint loads (a converted layer takes its "
    "conv's keys): torchvision's ResNet files into mmdet's/mmpose's ResNet "
    "as they are, an mmpretrain classifier file with prefix='backbone.'")


@MODELS.register_module()
def ConvToAttention(module, data_preprocessor=None, init_cfg=None,
                    **convert_args):
    """Build ``module`` (config dict or ``nn.Module``) and convert it.

    Args:
        module (dict | nn.Module): the network; a dict is built with
            mmengine's root ``MODELS`` under the current default scope.
        data_preprocessor (dict, optional): set on ``module`` when its config
            has none (mmengine's Runner passes the config's top-level one).
        init_cfg (dict | list, optional): replaces the module's own
            ``init_cfg`` (so ``model.backbone.init_cfg.checkpoint=...``
            reaches it from the command line); None keeps the module's.
        **convert_args: :func:`convattn_mm.convert.convert_model` arguments
            (``init``, ``select``, ``types``, ``qk_dims``, ...).

    Returns:
        the converted module (its own class).
    """
    if isinstance(module, dict):
        cfg = copy.deepcopy(dict(module))
        if init_cfg is not None:
            cfg['init_cfg'] = copy.deepcopy(init_cfg)
        check_pretrained_cfg(cfg.get('init_cfg'), str(cfg.get('type')),
                             PRETRAINED_HINT)
        if data_preprocessor is not None:
            cfg.setdefault('data_preprocessor', data_preprocessor)
        net = ROOT_MODELS.build(cfg)
    elif isinstance(module, nn.Module):
        net = module
        if init_cfg is not None:
            check_pretrained_cfg(init_cfg, type(net).__name__,
                                 PRETRAINED_HINT)
            net.init_cfg = copy.deepcopy(init_cfg)
    else:
        raise TypeError(f'module={type(module).__name__}: expected a config '
                        f'dict or an nn.Module')
    convert_model(net, **convert_args)
    watch_pretrained(net, None, PRETRAINED_HINT)
    return net
