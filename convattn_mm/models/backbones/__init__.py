"""Backbones (mmpretrain-style, registered in ``convattn_mm.registry.MODELS``):
2-D hierarchical, SA-ResNet and isotropic nets, the temporal (rank 1) and
volume (rank 3) encoders, and the MotionBERT-layout 3-D pose backbone (the
TCN-layout one, ``TCNAttnNet``, lives with its converter in
``convattn_mm.convert``)."""
from .convattn_net import ConvAttnNet
from .isotropic import IsotropicAttnNet
from .motion_attn import MotionAttnNet
from .sa_resnet import SAResNet
from .temporal import TemporalAttnBlock, TemporalAttnNet, TemporalAttnStream
from .volume import VolumeAttnBlock, VolumeAttnNet

__all__ = [
    'ConvAttnNet', 'SAResNet', 'IsotropicAttnNet', 'TemporalAttnBlock',
    'TemporalAttnNet', 'TemporalAttnStream', 'VolumeAttnBlock',
    'VolumeAttnNet', 'MotionAttnNet'
]
