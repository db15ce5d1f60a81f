# Cordonnier et al. (ICLR 2020) CIFAR model: 2x2 space-to-depth, 6 layers of
# 9 heads, hidden 400, global attention with a quadratic encoding.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='convattn_mm.IsotropicAttnNet',
        num_layers=6,
        num_heads=9,
        embed_dims=400,
        ffn_dims=512,
        kernel_size='global',
        pos_encoding='quadratic'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=400,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
)
