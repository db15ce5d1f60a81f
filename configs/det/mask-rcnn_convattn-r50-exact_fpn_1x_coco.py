# Mask R-CNN + FPN on the exactly converted ResNet-50 (see
# retinanet_convattn-r50-exact_fpn_1x_coco.py): set the ImageNet checkpoint
# with --cfg-options model.backbone.init_cfg.checkpoint=resnet50.pth
# (an mmpretrain classifier file: also model.backbone.init_cfg.prefix=backbone.).
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='convattn_mm.ConvToAttention',
        init='exact',
        module=dict(
            type='mmdet.ResNet',
            depth=50,
            num_stages=4,
            out_indices=(0, 1, 2, 3),
            frozen_stages=1,
            norm_cfg=dict(type='BN', requires_grad=True),
            norm_eval=True,
            style='pytorch'),
        init_cfg=dict(type='Pretrained', checkpoint=None)),
    neck=dict(in_channels=[256, 512, 1024, 2048]))

optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'.pos_encoding.': dict(decay_mult=0.0)}))
