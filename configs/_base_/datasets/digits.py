# scikit-learn's handwritten digits (shipped with scikit-learn: no download),
# 8x8 grey images resized to 32x32 RGB; fixed split: sample i is a test
# sample iff i % 5 == 0 (1437 train / 360 test). See convattn_mm.DigitsDataset.
dataset_type = 'convattn_mm.DigitsDataset'
img_size = 32
data_preprocessor = dict(
    num_classes=10,
    # statistics of the resized images (0..255 scale)
    mean=[77.9, 77.9, 77.9],
    std=[82.1, 82.1, 82.1],
    to_rgb=False,
)

train_pipeline = [
    dict(type='RandomCrop', crop_size=img_size, padding=2),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='PackInputs')]

train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    dataset=dict(type=dataset_type, split='train', img_size=img_size,
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=120,
    num_workers=0,
    dataset=dict(type=dataset_type, split='test', img_size=img_size,
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))

test_dataloader = val_dataloader
test_evaluator = val_evaluator
