"""Backbones (mmpretrain-style, registered in ``convattn_mm.registry.MODELS``):
2-D hierarchical, SA-ResNet and isotropic nets, and the temporal (rank 1) and
volume (rank 3) encoders."""
from .convattn_net import ConvAttnNet
from .isotropic import IsotropicAttnNet
from .sa_resnet import SAResNet
from .temporal import TemporalAttnBlock, TemporalAttnNet
from .volume import VolumeAttnBlock, VolumeAttnNet

__all__ = [
    'ConvAttnNet', 'SAResNet', 'IsotropicAttnNet', 'TemporalAttnBlock',
    'TemporalAttnNet', 'VolumeAttnBlock', 'VolumeAttnNet'
]
