# 2D->3D pose lifting (Human3.6M, 27-frame windows, VideoPose3D style) with
# a 1-D δ-attention encoder over time in place of the TCN: each frame
# attends to a 3-frame window at dilations 1, 3, 9 (the TCN's 27-frame
# receptive field), with a relative bias per frame offset. mmpose's own
# dataset, codec (VideoPoseLifting), transforms, head, loss (MPJPELoss) and
# MPJPE / P-MPJPE evaluators; AdamW with warm-up, cosine decay, clipping.
_base_ = [
    'mmpose::body_3d_keypoint/video_pose_lift/h36m/'
    'video-pose-lift_tcn-27frm-supv_8xb128-160e_h36m.py',
    '../_base_/schedules/pose3d_adamw_warmup.py'
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='convattn_mm.TemporalAttnNet',
        in_channels=2 * 17,
        embed_dims=256,
        depth=6,
        num_heads=8,
        kernel_size=3,
        dilations=(1, 3, 9),
        drop_rate=0.1,
        out_frames='target'),
    head=dict(in_channels=256))

optim_wrapper = _base_.pose3d_optim_wrapper
param_scheduler = _base_.pose3d_param_scheduler
