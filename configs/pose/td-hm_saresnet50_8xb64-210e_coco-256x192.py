# Top-down heatmap pose estimation (COCO, 17 keypoints, 256x192) on
# SAResNet-50 started from an ImageNet ResNet-50 through
#   python tools/misc/resnet_to_saresnet.py resnet50.pth \
#       work_dirs/pretrained/saresnet50_from_resnet50.pth
_base_ = (
    'mmpose::body_2d_keypoint/topdown_heatmap/coco/'
    'td-hm_res50_8xb64-210e_coco-256x192.py')

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

# Fine-tuning optimiser: AdamW with layer-wise
# learning-rate decay over the backbone (mmpose's own layer-decay constructor
# only knows ViT names; this one asks the backbone's get_layer_depth).
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='BackboneLayerDecayOptimWrapperConstructor',
    optimizer=dict(
        type='AdamW', lr=5e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        layer_decay_rate=0.85,
        norm_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={'.pos_encoding.': dict(decay_mult=0.0)}),
    clip_grad=dict(max_norm=1.0, norm_type=2))
