"""Convolution -> relative-δ attention, for layers, networks and checkpoints.

* :func:`conv_to_attention`: one ``nn.Conv{1,2,3}d`` -> ``ConvAttention``
  (exact, or a soft trainable init);
* :func:`convert_model`: every selected conv of a network, in place, with a
  :class:`ConversionReport`;
* :func:`load_cnn_state_dict` / :func:`save_converted`: mmengine, plain and
  torchvision checkpoint layouts;
* ``ConvToAttention`` (registered in ``MODELS``): a config-level "this
  network, with its convolutions as attention";
* :func:`resnet_to_saresnet`: ResNet weights onto an ``SAResNet``.

See ``docs/convert.md`` and ``tools/convert_cnn.py``.
"""
from .checkpoint import (LAYOUTS, detect_layout, load_cnn_state_dict,
                         read_checkpoint, save_converted,
                         torchvision_to_mmpretrain)
from .conv import (HARD_NEG, INITS, UnsupportedConvError, check_convertible,
                   conv_to_attention, proj_weight, soft_init_bound)
from .converted import ConvToAttention
from .model import CONV_TYPES, ConversionReport, convert_model
from .resnet import resnet_to_saresnet

__all__ = [
    'conv_to_attention', 'check_convertible', 'proj_weight',
    'soft_init_bound', 'UnsupportedConvError', 'HARD_NEG', 'INITS',
    'convert_model', 'ConversionReport', 'CONV_TYPES', 'load_cnn_state_dict',
    'read_checkpoint', 'detect_layout', 'save_converted',
    'torchvision_to_mmpretrain', 'LAYOUTS', 'ConvToAttention',
    'resnet_to_saresnet'
]
