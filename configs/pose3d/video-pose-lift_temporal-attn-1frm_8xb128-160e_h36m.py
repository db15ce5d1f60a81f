# Single-frame lifting: the 27-frame config on one-frame inputs (a window of
# one frame: each block is attention over itself, i.e. a per-frame MLP).
_base_ = ['./video-pose-lift_temporal-attn-27frm_8xb128-160e_h36m.py']

model = dict(backbone=dict(kernel_size=1, dilations=(1, )))

train_dataloader = dict(dataset=dict(seq_len=1))
val_dataloader = dict(dataset=dict(seq_len=1))
test_dataloader = val_dataloader
