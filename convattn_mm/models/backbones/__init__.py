"""Backbones (mmpretrain-style, registered in ``convattn_mm.registry.MODELS``)."""
from .convattn_net import ConvAttnNet
from .isotropic import IsotropicAttnNet
from .sa_resnet import SAResNet

__all__ = ['ConvAttnNet', 'SAResNet', 'IsotropicAttnNet']
