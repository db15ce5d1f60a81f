# RetinaNet + FPN on ConvAttnNet-tiny (conv / conv / local δ-attention /
# global δ-attention stages), fine-tuned from an ImageNet checkpoint.
# Window attention keeps 800x1333 inputs linear in memory up to the last
# stage (1/32, global attention over ~1000 tokens).
_base_ = [
    'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
    '../_base_/schedules/finetune_adamw_layer_decay.py'
]

# The ImageNet ConvAttnNet-tiny checkpoint (an mmpretrain ImageClassifier
# file, keys 'backbone.*', e.g. from configs/convattn_net/
# convattnnet-tiny_8xb128_in1k.py) has no default: set it with
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/convattn-tiny_in1k.pth
# or train from scratch with --cfg-options model.backbone.init_cfg=None
# (without either, the build stops and says so).
pretrained = None

model = dict(
    backbone=dict(
        _delete_=True,
        type='convattn_mm.ConvAttnNet',
        arch='tiny',
        out_indices=(1, 2, 3),
        drop_path_rate=0.2,
        frozen_stages=0,  # the stem
        norm_eval=False,  # LayerNorms only
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[128, 256, 512], start_level=0, num_outs=5))

# AdamW with layer-wise lr decay (configs/_base_/schedules/finetune_adamw_layer_decay.py)
optim_wrapper = {{_base_.finetune_optim_wrapper}}
