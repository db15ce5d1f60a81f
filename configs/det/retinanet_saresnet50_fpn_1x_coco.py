# RetinaNet + FPN on SAResNet-50 (ResNet-50 whose 3x3 convolutions are
# δ-attention), started from an ImageNet ResNet-50 through
#   python tools/misc/resnet_to_saresnet.py resnet50.pth \
#       work_dirs/pretrained/saresnet50_from_resnet50.pth
# (stem, 1x1 convs, norms copied; each 3x3 conv split per offset onto the
# conv-initialised heads).
_base_ = [
    'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
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
        out_indices=(1, 2, 3),
        frozen_stages=1,  # stem and stage 1, as mmdet's ResNet configs
        norm_eval=True,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[512, 1024, 2048], start_level=0, num_outs=5))

# AdamW with layer-wise lr decay (configs/_base_/schedules/finetune_adamw_layer_decay.py)
optim_wrapper = {{_base_.finetune_optim_wrapper}}
