# Short AdamW schedule for the embedded digits set (CPU demo size).
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={'.table': dict(decay_mult=0.0),
                                    '.centres': dict(decay_mult=0.0),
                                    '.log_alpha': dict(decay_mult=0.0)}),
)
param_scheduler = [
    # 40 warm-up iterations, composed with a cosine decay over all epochs
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0,
         end=40),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=30, val_interval=10)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64)
