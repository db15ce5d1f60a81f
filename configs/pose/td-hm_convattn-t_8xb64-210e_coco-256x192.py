# Top-down heatmap pose estimation (COCO, 17 keypoints, 256x192) on
# ConvAttnNet-tiny, fine-tuned from ImageNet.
_base_ = [
    'mmpose::body_2d_keypoint/topdown_heatmap/coco/'
    'td-hm_res50_8xb64-210e_coco-256x192.py',
    '../_base_/schedules/finetune_adamw_layer_decay.py'
]

# The ImageNet ConvAttnNet-tiny checkpoint (an mmpretrain ImageClassifier
# file, keys 'backbone.*', e.g. from configs/convattn_net/
# convattnnet-tiny_8xb128_in1k.py) has no default: set it with
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/convattn-tiny_in1k.pth
# or train from scratch with --cfg-options model.backbone.init_cfg=None
# (without either, the build stops and says so).
pretrained = None

model = dict(
    backbone=dict(
        _delete_=True,
        type='convattn_mm.ConvAttnNet',
        arch='tiny',
        out_indices=(3, ),
        drop_path_rate=0.1,
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    head=dict(in_channels=512))

# AdamW with layer-wise lr decay (configs/_base_/schedules/
# finetune_adamw_layer_decay.py; mmpose's own layer-decay constructor only
# knows ViT names), at pose's higher lr, faster decay and tighter clipping
optim_wrapper = _base_.finetune_optim_wrapper
optim_wrapper.optimizer.lr = 5e-4
optim_wrapper.paramwise_cfg.layer_decay_rate = 0.85
optim_wrapper.clip_grad.max_norm = 1.0
