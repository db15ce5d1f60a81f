# SA-ResNet-18 with attention soft-initialised as 3x3 convolutions.
_base_ = ['./sa-resnet18_1xb128_cifar10.py']
model = dict(backbone=dict(conv_init=True, num_heads=8))
