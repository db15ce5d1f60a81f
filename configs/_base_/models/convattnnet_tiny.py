# ConvAttnNet-T (~28 M parameters, ~4.5 GFLOPs at 224): conv stages at 1/4
# and 1/8, local 7x7 attention at 1/16, global attention at 1/32.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='convattn_mm.ConvAttnNet',
        arch='tiny',
        stem_stride=4,
        kernel_sizes=7,
        pos_encodings=dict(type='RelativeBiasTable'),
        drop_path_rate=0.2),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        init_cfg=None,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                  mode='original'),
        cal_acc=False),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.)
    ],
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]),
)
