# RetinaNet + FPN on a ResNet-50 whose convolutions (7x7 stem, the 16 3x3
# convs) are relative-δ attention layers built to compute exactly what the
# convs compute (convattn_mm.ConvToAttention, init='exact'; the 1x1 convs
# stay convs). Started from an ImageNet ResNet-50 you downloaded: its
# features are the CNN's (tests/test_downstream/test_exact_start.py).
#
#   python tools/train.py configs/det/retinanet_convattn-r50-exact_fpn_1x_coco.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=resnet50.pth
#
# torchvision's file (resnet50-*.pth) loads as it is; for an mmpretrain
# classifier file add model.backbone.init_cfg.prefix=backbone. ; from scratch:
# model.backbone.init_cfg=None. With no checkpoint set, the build stops
# with these instructions.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='convattn_mm.ConvToAttention',
        init='exact',
        module=dict(
            type='mmdet.ResNet',
            depth=50,
            num_stages=4,
            out_indices=(1, 2, 3),
            frozen_stages=1,
            norm_cfg=dict(type='BN', requires_grad=True),
            norm_eval=True,
            style='pytorch'),
        init_cfg=dict(type='Pretrained', checkpoint=None)),
    neck=dict(in_channels=[512, 1024, 2048]))

# mmdet's SGD schedule; no weight decay on the position tables
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'.pos_encoding.': dict(decay_mult=0.0)}))
