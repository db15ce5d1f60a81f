# mmpose's 27-frame TCN lifter with every temporal convolution converted to
# δ-attention (convattn_mm.TCNAttnNet, same arguments as TCN), fine-tuned
# from a converted TCN checkpoint:
#   python tools/convert_tcn.py TCN_CONFIG TCN_CKPT OUT.pth
#   python tools/train.py THIS_CONFIG --cfg-options load_from=OUT.pth
# With conv_init='exact' the converted model starts with the TCN's outputs
# (one-hot attention, no content term); 'gated' / 'quadratic' start near
# them and learn content attention.
_base_ = [
    'mmpose::body_3d_keypoint/video_pose_lift/h36m/'
    'video-pose-lift_tcn-27frm-supv_8xb128-160e_h36m.py',
    '../_base_/schedules/pose3d_adamw_warmup.py'
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='convattn_mm.TCNAttnNet',
        in_channels=2 * 17,
        stem_channels=1024,
        num_blocks=2,
        kernel_sizes=(3, 3, 3),
        dropout=0.25,
        conv_init='exact'))

# fine-tuning: a tenth of the from-scratch lr, short warm-up
optim_wrapper = _base_.pose3d_optim_wrapper
optim_wrapper.optimizer.update(lr=1e-4, weight_decay=0.01)
param_scheduler = _base_.pose3d_param_scheduler
param_scheduler[0].update(end=1)
param_scheduler[1].update(begin=1, T_max=159)

# the random flip of the δ-attention lifters (one mirror for 2-D and 3-D;
# see video-pose-lift_temporal-attn-27frm_8xb128-160e_h36m.py)
train_dataloader = dict(
    dataset=dict(pipeline=[
        dict(
            type='RandomFlipAroundRoot',
            keypoints_flip_cfg=dict(center_mode='static', center_x=500.0),
            target_flip_cfg=dict(center_mode='static', center_x=0.0)),
        dict(type='GenerateTarget', encoder=_base_.codec),
        dict(
            type='PackPoseInputs',
            meta_keys=('id', 'category_id', 'target_img_path',
                       'flip_indices', 'target_root'))
    ]))
