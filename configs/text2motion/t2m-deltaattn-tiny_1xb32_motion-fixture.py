# A CPU-sized model on the procedural fixture (no download):
#   python tools/make_motion_fixture.py data/motion_fixture
#   python tools/train.py configs/text2motion/t2m-deltaattn-tiny_1xb32_motion-fixture.py
# Trained on clips of at most 64 frames; relative encodings only, so it
# samples longer motions (tools/text2pose.py --seconds 15).
_base_ = ['./t2m-deltaattn_1xb64_humanml3d.py']

data_root = 'data/motion_fixture'
max_length = 64
dataset = dict(type='convattn_mm.HumanML3DDataset', data_root=data_root,
               motion_format='humanml3d')
model = dict(
    stats_root=data_root,
    text_encoder=dict(embed_dims=64, vocab_size=512, num_layers=1),
    denoiser=dict(embed_dims=96, depth=3, num_heads=4, kernel_size=9,
                  global_every=3),
    num_train_timesteps=100,
    num_sample_steps=10,
    guidance_scale=2.0,
    cond_drop_prob=0.15)
train_pipeline = [
    dict(type='convattn_mm.SampleCaption'),
    dict(type='convattn_mm.RandomCropMotion', max_length=max_length),
    dict(type='convattn_mm.PackMotionInputs'),
]
test_pipeline = [
    dict(type='convattn_mm.SampleCaption', deterministic=True),
    dict(type='convattn_mm.RandomCropMotion', max_length=max_length,
         random=False),
    dict(type='convattn_mm.PackMotionInputs'),
]
train_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(_delete_=True, **dataset, split='train',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, **dataset, split='val',
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [dict(type='convattn_mm.MotionQualityMetric',
                      motion_format='humanml3d')]
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=False, T_max=3000,
                        eta_min=1e-5)]
train_cfg = dict(by_epoch=False, max_iters=3000, val_interval=1000)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000,
                    max_keep_ckpts=1))
randomness = dict(seed=0)
