# Text-to-motion diffusion on HumanML3D (263-d features, 20 fps) with a
# δ-attention denoiser over time: relative encodings only (RoPE), local
# windows of 15 frames with every third layer global, cross-attention to
# the caption's tokens, AdaLN from the pooled caption and the step.
# Prepare data/HumanML3D as described in docs/text2motion.md.
_base_ = ['../_base_/default_runtime.py']

data_root = 'data/HumanML3D'
motion_format = 'humanml3d'
max_length = 196

model = dict(
    type='convattn_mm.TextToMotion',
    motion_format=motion_format,
    stats_root=data_root,
    # a frozen CLIP text tower instead (pip install transformers; the user
    # downloads the weights):
    # text_encoder=dict(type='convattn_mm.CLIPTextEncoder',
    #                   pretrained='checkpoints/clip-vit-base-patch32'),
    text_encoder=dict(type='convattn_mm.HashedWordEncoder', embed_dims=256,
                      vocab_size=8192, num_layers=4, num_heads=4),
    denoiser=dict(type='convattn_mm.MotionDenoiser', embed_dims=512,
                  depth=8, num_heads=8, mlp_ratio=2.0, kernel_size=15,
                  global_every=3, pos_encoding=dict(type='RoPE')),
    num_train_timesteps=1000,
    beta_schedule='squaredcos_cap_v2',
    num_sample_steps=50,
    guidance_scale=2.5,
    cond_drop_prob=0.1)

train_pipeline = [
    dict(type='convattn_mm.SampleCaption'),
    dict(type='convattn_mm.RandomCropMotion', max_length=max_length),
    dict(type='convattn_mm.PackMotionInputs'),
]
test_pipeline = [
    dict(type='convattn_mm.SampleCaption', deterministic=True),
    dict(type='convattn_mm.RandomCropMotion', max_length=max_length,
         unit_length=4, random=False),
    dict(type='convattn_mm.PackMotionInputs'),
]
dataset = dict(type='convattn_mm.HumanML3DDataset', data_root=data_root,
               motion_format=motion_format)
train_dataloader = dict(
    batch_size=64, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(**dataset, split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(**dataset, split='val', pipeline=test_pipeline))
test_dataloader = dict(val_dataloader,
                       dataset=dict(**dataset, split='test',
                                    pipeline=test_pipeline))
# the field's numbers need the T2M evaluator release (docs/text2motion.md);
# MotionQualityMetric needs nothing
val_evaluator = [dict(type='convattn_mm.MotionQualityMetric',
                      motion_format=motion_format)]
test_evaluator = [
    dict(type='convattn_mm.Text2MotionMetric',
         evaluator_checkpoint='checkpoints/t2m/text_mot_match/model/finest.tar',
         glove_dir='glove',
         evaluator_mean='checkpoints/t2m/Comp_v6_KLD01/meta/mean.npy',
         evaluator_std='checkpoints/t2m/Comp_v6_KLD01/meta/std.npy',
         motion_format=motion_format),
    dict(type='convattn_mm.MotionQualityMetric', motion_format=motion_format),
]

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-4,
                                    weight_decay=0.01),
                     clip_grad=dict(max_norm=1.0))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=False, T_max=200000,
                        eta_min=1e-6)]
train_cfg = dict(by_epoch=False, max_iters=200000, val_interval=20000)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=10000,
                    max_keep_ckpts=3))
