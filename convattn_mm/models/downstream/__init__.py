"""Downstream pieces: layer-wise lr decay for detectors / pose estimators,
the 1-D (temporal) and 3-D (volume) δ-attention modules, and the ResNet ->
SAResNet weight map for fine-tuning. See ``docs/downstream.md``."""
from .optim import (BackboneLayerDecayOptimWrapperConstructor,
                    backbone_layer_depth)
from .pretrained import resnet_to_saresnet
from .temporal import TemporalAttnBlock, TemporalAttnNet, TemporalAttnStream
from .volume import VolumeAttnBlock, VolumeAttnNet

__all__ = [
    'BackboneLayerDecayOptimWrapperConstructor', 'backbone_layer_depth',
    'resnet_to_saresnet', 'TemporalAttnBlock', 'TemporalAttnNet',
    'TemporalAttnStream', 'VolumeAttnBlock', 'VolumeAttnNet'
]
