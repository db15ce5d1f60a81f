# Mask R-CNN + FPN on SAResNet-50 started from an ImageNet ResNet-50 (see
# retinanet_saresnet50_fpn_1x_coco.py for making the checkpoint).
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    '../_base_/schedules/finetune_adamw_layer_decay.py'
]

pretrained = 'work_dirs/pretrained/saresnet50_from_resnet50.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='convattn_mm.SAResNet',
        depth=50,
        num_heads=8,
        conv_init=True,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_eval=True,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[256, 512, 1024, 2048]))

# AdamW with layer-wise lr decay (configs/_base_/schedules/finetune_adamw_layer_decay.py)
optim_wrapper = {{_base_.finetune_optim_wrapper}}
