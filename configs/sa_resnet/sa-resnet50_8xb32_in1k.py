# SA-ResNet-50 (SASA-style, window 7) on ImageNet-1k: mmpretrain's ResNet
# recipe (SGD, batch 256, 100 epochs, step decay) with its data pipeline.
_base_ = [
    '../_base_/models/sa_resnet50.py',
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
    '../_base_/default_runtime.py'
]
