# 2D->3D pose lifting (Human3.6M, 27-frame windows, VideoPose3D style) with
# a 1-D δ-attention encoder over time in place of the TCN: each frame
# attends to a 3-frame window at dilations 1, 3, 9 (the TCN's 27-frame
# receptive field), with a relative bias per frame offset. mmpose's own
# dataset, codec (VideoPoseLifting), transforms, head, loss (MPJPELoss) and
# MPJPE / P-MPJPE evaluators; AdamW with warm-up, cosine decay, clipping.
# One change to mmpose's pipeline: the random flip mirrors the 2-D
# keypoints about the image centre (x = 500 px, H36M's images are 1000 px
# wide) and the 3-D target about the camera's axis (X = 0), i.e. the same
# mirror in both; mmpose's config flips pixels about x = 0.5 px and metres
# about X = 0.5 m, which moves flipped inputs a full image width aside.
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

train_pipeline = [
    dict(
        type='RandomFlipAroundRoot',
        keypoints_flip_cfg=dict(center_mode='static', center_x=500.0),
        target_flip_cfg=dict(center_mode='static', center_x=0.0)),
    dict(type='GenerateTarget', encoder=_base_.codec),
    dict(
        type='PackPoseInputs',
        meta_keys=('id', 'category_id', 'target_img_path', 'flip_indices',
                   'target_root'))
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
