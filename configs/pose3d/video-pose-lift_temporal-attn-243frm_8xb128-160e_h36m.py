# 243-frame lifting: five blocks at dilations 1, 3, 9, 27, 81 (kernel 3:
# the 243-frame receptive field of mmpose's 243-frame TCN).
_base_ = ['./video-pose-lift_temporal-attn-27frm_8xb128-160e_h36m.py']

model = dict(backbone=dict(depth=5, dilations=(1, 3, 9, 27, 81)))

train_dataloader = dict(dataset=dict(seq_len=243))
val_dataloader = dict(dataset=dict(seq_len=243))
test_dataloader = val_dataloader
