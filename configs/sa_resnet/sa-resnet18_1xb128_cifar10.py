# SA-ResNet-18 (3x3 attention windows, learned bias) on CIFAR-10.
_base_ = [
    '../_base_/models/sa_resnet18_cifar.py',
    '../_base_/datasets/cifar10_bs128.py',
    '../_base_/schedules/cifar10_sgd_200e.py', '../_base_/default_runtime.py'
]
