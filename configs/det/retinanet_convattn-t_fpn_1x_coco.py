# RetinaNet + FPN on ConvAttnNet-tiny (conv / conv / local δ-attention /
# global δ-attention stages), fine-tuned from an ImageNet checkpoint.
# Window attention keeps 800x1333 inputs linear in memory up to the last
# stage (1/32, global attention over ~1000 tokens).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'

# an mmpretrain ImageClassifier checkpoint of ConvAttnNet-tiny (keys
# 'backbone.*'), e.g. trained with this package's ImageNet configs
pretrained = 'work_dirs/pretrained/convattn-tiny_in1k.pth'

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
