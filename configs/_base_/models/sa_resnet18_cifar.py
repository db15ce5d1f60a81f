# SA-ResNet-18 for 32x32 inputs (3x3 stride-1 stem, no max-pool).
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='convattn_mm.SAResNet',
        depth=18,
        stem='cifar',
        num_heads=8,
        kernel_size=3,
        out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
)
