# SA-ResNet-50 for ImageNet (7x7 stem; SASA's spatial extent 7, 8 heads).
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='convattn_mm.SAResNet',
        depth=50,
        stem='imagenet',
        num_heads=8,
        kernel_size=7,
        out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)),
)
