# ConvAttnNet 'demo' (~0.3 M parameters) for 32x32 inputs, 10 classes.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='convattn_mm.ConvAttnNet',
        arch='demo',
        stem_stride=2,
        kernel_sizes=[5, 5, 3, 3],
        pos_encodings=dict(type='RelativeBiasTable'),
        drop_path_rate=0.05),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=96,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, )),
)
