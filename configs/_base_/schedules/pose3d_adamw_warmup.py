# Optimiser for the δ-attention pose lifters: AdamW with a linear warm-up
# (iteration-based over the first epochs), cosine decay and gradient
# clipping, in place of the TCN's plain Adam + exponential decay. No weight
# decay on norms, biases, the joint embedding and the position tables.
# Variables, not `optim_wrapper` / `param_scheduler`: the lifter configs
# also inherit mmpose's own, and two bases may not define the same key.
# Use them as
#   optim_wrapper = _base_.pose3d_optim_wrapper
#   param_scheduler = _base_.pose3d_param_scheduler
# and change values after that (lr, epochs).
pose3d_optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            '.pos_encoding.': dict(decay_mult=0.0),
            'joint_embed': dict(decay_mult=0.0)
        }),
    clip_grad=dict(max_norm=1.0, norm_type=2))

pose3d_param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-6,
        by_epoch=True,
        begin=5,
        end=160,
        T_max=155,
        convert_to_iter_based=True)
]
