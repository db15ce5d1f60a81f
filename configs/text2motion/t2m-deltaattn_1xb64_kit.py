# The HumanML3D config on KIT-ML (251-d features, 21 joints, 12.5 fps,
# millimetres; 24 <= T < 200 frames). Prepare data/KIT-ML as described in
# docs/text2motion.md; the test metric needs the kit/ evaluator release.
_base_ = ['./t2m-deltaattn_1xb64_humanml3d.py']

data_root = 'data/KIT-ML'
motion_format = 'kit'
dataset = dict(type='convattn_mm.HumanML3DDataset', data_root=data_root,
               motion_format=motion_format)
model = dict(motion_format=motion_format, stats_root=data_root)
train_dataloader = dict(dataset=dict(data_root=data_root,
                                     motion_format=motion_format))
val_dataloader = dict(dataset=dict(data_root=data_root,
                                   motion_format=motion_format))
test_dataloader = dict(dataset=dict(data_root=data_root,
                                    motion_format=motion_format))
val_evaluator = [dict(type='convattn_mm.MotionQualityMetric',
                      motion_format=motion_format)]
test_evaluator = [
    dict(type='convattn_mm.Text2MotionMetric',
         evaluator_checkpoint='checkpoints/kit/text_mot_match/model/finest.tar',
         glove_dir='glove',
         evaluator_mean='checkpoints/kit/Comp_v6_KLD005/meta/mean.npy',
         evaluator_std='checkpoints/kit/Comp_v6_KLD005/meta/std.npy',
         motion_format=motion_format),
    dict(type='convattn_mm.MotionQualityMetric', motion_format=motion_format),
]
