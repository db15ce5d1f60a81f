# RetinaNet + FPN on SAResNet-50 (a ResNet-50 whose 3x3 convolutions are 8-head
# δ-attention with a soft conv-init), trained from scratch (mmpretrain-style
# init). This is NOT an ImageNet start point: SAResNet's heads cannot hold a
# ResNet's 3x3 convs exactly (docs/downstream.md). For features identical to
# an ImageNet ResNet-50's use the *_convattn-r50-exact_* configs. An
# approximate start can be written with
#   python tools/misc/resnet_to_saresnet.py resnet50.pth saresnet50_approx.pth
# (it prints how far the features are from the ResNet's) and set with
#   --cfg-options model.backbone.init_cfg.type=Pretrained \
#       model.backbone.init_cfg.checkpoint=saresnet50_approx.pth \
#       model.backbone.init_cfg.prefix=backbone.
_base_ = [
    'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='convattn_mm.SAResNet',
        depth=50,
        num_heads=8,
        conv_init=True,
        out_indices=(1, 2, 3),
        frozen_stages=-1,  # from scratch: nothing to freeze
        norm_eval=False),
    neck=dict(in_channels=[512, 1024, 2048], start_level=0, num_outs=5))

# AdamW (from scratch: no layer-wise decay); no weight decay on norms,
# biases and position tables
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={'.pos_encoding.': dict(decay_mult=0.0)}),
    clip_grad=dict(max_norm=35, norm_type=2))
