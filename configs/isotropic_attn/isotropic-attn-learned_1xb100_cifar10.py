# The paper's CIFAR-10 model with a learned relative encoding (bias table).
_base_ = ['./isotropic-attn-quadratic_1xb100_cifar10.py']
model = dict(backbone=dict(pos_encoding='learned'))
