'''Backbones (mmpretrain-style, registered in ``convattn_mm.registry.MODELS``).'''
from .convattn_net import ConvAttnNet
from .isotropic import IsotropicAttnNet
from .motion_attn import MotionAttnNet
from .sa_resnet import SAResNet
from .tcn_attn import TCNAttnNet

__all__ = ['ConvAttnNet', 'SAResNet', 'IsotropicAttnNet', 'MotionAttnNet',
           'TCNAttnNet']
