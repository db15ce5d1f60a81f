# Top-down heatmap pose estimation (COCO, 17 keypoints, 256x192) on a
# ResNet-50 whose convolutions are exactly converted to relative-δ
# attention (convattn_mm.ConvToAttention, init='exact'), started from an
# ImageNet ResNet-50 checkpoint you downloaded:
#
#   python tools/train.py configs/pose/td-hm_convattn-r50-exact_8xb64-210e_coco-256x192.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=resnet50.pth
#
# (an mmpretrain classifier file: also model.backbone.init_cfg.prefix=backbone. ;
# from scratch: model.backbone.init_cfg=None)
_base_ = [
    'mmpose::body_2d_keypoint/topdown_heatmap/coco/'
    'td-hm_res50_8xb64-210e_coco-256x192.py'
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='convattn_mm.ConvToAttention',
        init='exact',
        module=dict(type='mmpose.ResNet', depth=50, out_indices=(3, )),
        init_cfg=dict(type='Pretrained', checkpoint=None)),
    head=dict(in_channels=2048))

# mmpose's Adam schedule (no weight decay, so nothing to exclude)
