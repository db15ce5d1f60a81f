# Mask R-CNN + FPN on SAResNet-50 started from an ImageNet ResNet-50 (see
# retinanet_saresnet50_fpn_1x_coco.py for making the checkpoint).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'

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

# Fine-tuning optimiser: AdamW with
# layer-wise learning-rate decay over the backbone (its get_layer_depth),
# no weight decay on norms, biases and the position-encoding tables.
# BackboneLayerDecayOptimWrapperConstructor is registered by convattn_mm
# (mmdet's LearningRateDecayOptimizerConstructor only knows ConvNeXt names).
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='BackboneLayerDecayOptimWrapperConstructor',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        layer_decay_rate=0.9,
        norm_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={'.pos_encoding.': dict(decay_mult=0.0)}),
    clip_grad=dict(max_norm=35, norm_type=2))
