# A narrow SA-ResNet-18 (16 base channels, 4 heads) on the embedded digits.
_base_ = [
    '../_base_/models/sa_resnet18_cifar.py', '../_base_/datasets/digits.py',
    '../_base_/schedules/digits_adamw_30e.py', '../_base_/default_runtime.py'
]
model = dict(
    backbone=dict(base_channels=16, num_heads=4),
    head=dict(in_channels=128))
default_hooks = dict(logger=dict(type='LoggerHook', interval=10))
