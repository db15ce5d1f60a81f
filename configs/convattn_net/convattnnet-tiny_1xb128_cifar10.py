# ConvAttnNet-T widths on CIFAR-10 (32x32: stem stride 1, so the stages see
# 32, 16, 8 and 4 pixels).
_base_ = [
    '../_base_/models/convattnnet_tiny.py',
    '../_base_/datasets/cifar10_bs128.py',
    '../_base_/schedules/cifar10_sgd_200e.py', '../_base_/default_runtime.py'
]
model = dict(
    backbone=dict(stem_stride=1, drop_path_rate=0.1),
    head=dict(num_classes=10,
              loss=dict(_delete_=True, type='CrossEntropyLoss',
                        loss_weight=1.0),
              cal_acc=True),
    train_cfg=None)
optim_wrapper = dict(
    _delete_=True,
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=5.0))
