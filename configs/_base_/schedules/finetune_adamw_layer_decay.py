# Fine-tuning optimiser for downstream configs: AdamW with layer-wise
# learning-rate decay over the backbone (its get_layer_depth), no weight decay
# on norms, biases and the position-encoding tables.
# BackboneLayerDecayOptimWrapperConstructor is registered by convattn_mm
# (mmdet's LearningRateDecayOptimizerConstructor only knows ConvNeXt names).
# A variable, not `optim_wrapper`: the downstream configs also inherit mmdet's
# own optim_wrapper, and two bases may not define the same key. Use it as
#   optim_wrapper = {{_base_.finetune_optim_wrapper}}
# or, to change some values (the pose configs do):
#   optim_wrapper = _base_.finetune_optim_wrapper
#   optim_wrapper.optimizer.lr = 5e-4
finetune_optim_wrapper = dict(
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
