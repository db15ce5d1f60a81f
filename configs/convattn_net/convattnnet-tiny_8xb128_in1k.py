# ConvAttnNet-T on ImageNet-1k, 8 GPUs x 128 images, Swin/NAT recipe.
_base_ = [
    '../_base_/models/convattnnet_tiny.py',
    '../_base_/datasets/imagenet_bs128_swin_224.py',
    '../_base_/schedules/imagenet_bs1024_adamw_300e.py',
    '../_base_/default_runtime.py'
]
