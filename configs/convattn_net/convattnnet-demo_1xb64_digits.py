# The default model of `make demo`: ConvAttnNet 'demo' on the embedded
# digits set, CPU-sized (conv / local / local / global stages).
_base_ = [
    '../_base_/models/convattnnet_demo.py', '../_base_/datasets/digits.py',
    '../_base_/schedules/digits_adamw_30e.py', '../_base_/default_runtime.py'
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=1))
randomness = dict(seed=0)
