# The paper's CIFAR-10 model with the quadratic encoding (batch 100).
_base_ = [
    '../_base_/models/isotropic_attn_cifar.py',
    '../_base_/datasets/cifar10_bs128.py',
    '../_base_/schedules/cifar10_sgd_200e.py', '../_base_/default_runtime.py'
]
train_dataloader = dict(batch_size=100)
val_dataloader = dict(batch_size=100)
test_dataloader = val_dataloader
optim_wrapper = dict(
    _delete_=True,
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=1.0))
auto_scale_lr = dict(base_batch_size=100)
