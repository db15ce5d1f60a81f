"""tools/analyze_attention.py pieces on a tiny classifier."""
import json
import os.path as osp

import pytest

from .test_attention_hook import TINY_ARCH


def tiny_config():
    from mmengine.config import Config
    data = dict(type='convattn_mm.DigitsDataset', split='test', img_size=16,
                pipeline=[dict(type='PackInputs')])
    return Config(dict(
        default_scope='mmpretrain',
        model=dict(
            type='ImageClassifier',
            data_preprocessor=dict(num_classes=10, mean=[78.] * 3,
                                   std=[82.] * 3),
            backbone=dict(type='convattn_mm.ConvAttnNet', arch=TINY_ARCH,
                          stem_stride=1, kernel_sizes=3),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=10, in_channels=8,
                      loss=dict(type='CrossEntropyLoss'))),
        test_dataloader=dict(dataset=data, batch_size=2)))


def test_analyze_writes_figures_and_tables(tmp_path):
    pytest.importorskip('convattn_mm.datasets')
    from convattn_mm.analysis.report import (analyze, build_model,
                                             load_images)
    model, cfg = build_model(tiny_config(), 'none')
    samples, display = load_images(cfg, None, num_images=3)
    assert display.shape == (3, 16, 16)  # grey digits
    out = str(tmp_path)
    measures = analyze(model, samples, display, out, queries_per_axis=4,
                       query_pixels=[(8, 8), (2, 13)], batch_size=2,
                       progress=False)
    assert len(measures) == 3  # conv-init, local, global stages
    for f in ('attention_maps_q0.png', 'attention_maps_q1.png',
              'attention_contours.png', 'effective_kernels.png',
              'layer_summary.png', 'measures.csv'):
        assert osp.getsize(osp.join(out, f)) > 0, f
    data = json.load(open(osp.join(out, 'measures.json')))
    assert data['meta']['images'] == 3
    assert len(data['heads']) == 6
    conv_init = [r for r in data['heads']
                 if r['layer'] == 'backbone.stages.1.blocks.0.mixer']
    # the conv-init stage starts on the 3x3 offsets (0.9 of the mass)
    assert conv_init[0]['peak_offset'] == [0.0, 0.0]
    assert conv_init[1]["peak_offset"] == [0.0, 2.0]  # 1 step, stride 2
    assert all(r['peak_mass'] > 0.8 for r in conv_init)
    lines = open(osp.join(out, 'measures.csv')).read().splitlines()
    assert lines[0].startswith('layer,head,mean_distance')
    assert len(lines) == 7


def test_image_files(tmp_path):
    pytest.importorskip('convattn_mm.datasets')
    import numpy as np
    from PIL import Image
    from convattn_mm.analysis.report import load_images
    path = str(tmp_path / 'x.png')
    Image.fromarray(np.full((40, 30, 3), 200, np.uint8)).save(path)
    samples, display = load_images(tiny_config(), [path], size=(16, 16))
    assert samples[0]['inputs'].shape == (3, 16, 16)
    assert display.shape == (1, 16, 16)
