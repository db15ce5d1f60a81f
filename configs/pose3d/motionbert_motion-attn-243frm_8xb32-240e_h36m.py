# MotionBERT's H36M recipe (MotionBERTLabel codec, 243-frame clips,
# MPJPEVelocityJointLoss, flip test) with the DSTFormer swapped for
# MotionAttnNet: δ-attention over time per joint (relative offsets, so any
# clip length, not capped at DSTFormer's 243 temp_embed entries)
# alternating with attention over the 17 joints. Adds warm-up and clipping
# to mmpose's AdamW.
_base_ = [
    'mmpose::body_3d_keypoint/motionbert/h36m/'
    'motionbert_dstformer-243frm_8xb32-240e_h36m.py',
    '../_base_/schedules/pose3d_adamw_warmup.py'
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='convattn_mm.MotionAttnNet',
        in_channels=3,
        embed_dims=256,
        depth=5,
        num_heads=8,
        num_keypoints=17,
        kernel_size=27,
        dilations=(1, 3, 9),
        mlp_ratio=2.0,
        drop_path_rate=0.1),
    head=dict(in_channels=256))

optim_wrapper = _base_.pose3d_optim_wrapper
optim_wrapper.optimizer.update(lr=2e-4, weight_decay=0.01)
param_scheduler = _base_.pose3d_param_scheduler
param_scheduler[1].update(end=240, T_max=235)
