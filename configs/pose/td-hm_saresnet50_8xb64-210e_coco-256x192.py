# Top-down heatmap pose estimation (COCO, 17 keypoints, 256x192) on
# SAResNet-50 started from an ImageNet ResNet-50 through
#   python tools/misc/resnet_to_saresnet.py resnet50.pth \
#       work_dirs/pretrained/saresnet50_from_resnet50.pth
_base_ = [
    'mmpose::body_2d_keypoint/topdown_heatmap/coco/'
    'td-hm_res50_8xb64-210e_coco-256x192.py',
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
        out_indices=(3, ),
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    head=dict(in_channels=2048))

# AdamW with layer-wise lr decay (configs/_base_/schedules/
# finetune_adamw_layer_decay.py; mmpose's own layer-decay constructor only
# knows ViT names), at pose's higher lr, faster decay and tighter clipping
optim_wrapper = _base_.finetune_optim_wrapper
optim_wrapper.optimizer.lr = 5e-4
optim_wrapper.paramwise_cfg.layer_decay_rate = 0.85
optim_wrapper.clip_grad.max_norm = 1.0
