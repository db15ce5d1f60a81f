"""AttentionStatsHook in a short training run."""
import glob
import json
import os.path as osp

import pytest

from convattn_mm.engine import AttentionStatsHook

TINY_ARCH = dict(embed_dims=[8, 8, 8, 8], depths=[1, 1, 1, 1],
                 num_heads=[2, 2, 2, 2],
                 mixers=['conv', 'conv-init', 'local', 'global'],
                 mlp_ratio=1.0)


def tiny_cfg(work_dir, hook):
    data = dict(type='convattn_mm.DigitsDataset', img_size=16,
                pipeline=[dict(type='PackInputs')])
    loader = dict(batch_size=4, num_workers=0,
                  sampler=dict(type='DefaultSampler', shuffle=True))
    return dict(
        default_scope='mmpretrain',
        custom_imports=dict(imports=['convattn_mm.datasets']),
        work_dir=work_dir,
        model=dict(
            type='ImageClassifier',
            data_preprocessor=dict(num_classes=10, mean=[78.] * 3,
                                   std=[82.] * 3),
            backbone=dict(type='convattn_mm.ConvAttnNet', arch=TINY_ARCH,
                          stem_stride=1, kernel_sizes=3),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=10, in_channels=8,
                      loss=dict(type='CrossEntropyLoss'))),
        train_dataloader=dict(dataset=dict(split='train', **data), **loader),
        train_cfg=dict(by_epoch=False, max_iters=4),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        custom_hooks=[hook],
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1)),
        visualizer=dict(type='UniversalVisualizer',
                        vis_backends=[dict(type='LocalVisBackend')]),
        log_level='WARNING')


def test_hook_logs_scalars(tmp_path):
    pytest.importorskip('convattn_mm.datasets')
    from mmengine.config import Config
    from mmengine.runner import Runner
    hook = dict(type='convattn_mm.AttentionStatsHook', interval=2,
                num_images=3, queries=3)
    runner = Runner.from_cfg(Config(tiny_cfg(str(tmp_path), hook)))
    runner.train()
    files = glob.glob(osp.join(str(tmp_path), '*', 'vis_data',
                               'scalars.json'))
    assert len(files) == 1
    lines = [json.loads(s) for s in open(files[0])]
    stats = [ln for ln in lines
             if any(k.startswith('attention/') for k in ln)]
    # initial model + iterations 2 and 4
    assert [ln['step'] for ln in stats] == [0, 2, 4]
    layer = 'backbone.stages.1.blocks.0.mixer'
    for ln in stats:
        for h in range(2):
            for m in ('mean_distance', 'content_dependence',
                      'conv_distance', 'peak_mass'):
                v = ln[f'attention/{layer}/head{h}/{m}']
                assert v == v and v >= 0  # finite number
        assert 'attention/backbone.stages.3.blocks.0.mixer/mean/' \
               'mean_distance' in ln
    # conv-init stage at step 0 (8x8 map, stride 2 px): head 0 sits on the
    # centre (0 px), head 1 on the right neighbour (2 px) where the 'shift'
    # window holds it (the 3 query columns 0, 4, 7: not at column 7)
    first = stats[0]
    assert first[f'attention/{layer}/head0/mean_distance'] < 0.5
    assert 1.0 < first[f'attention/{layer}/head1/mean_distance'] < 1.6
    assert first[f'attention/{layer}/head0/peak_mass'] > 0.5
    # the training itself ran: the usual loss scalars are there too
    assert any('loss' in ln for ln in lines)


def test_hook_checks_arguments():
    with pytest.raises(ValueError, match='interval=0'):
        AttentionStatsHook(interval=0)
    with pytest.raises(ValueError, match="source='test'"):
        AttentionStatsHook(source='test')
    with pytest.raises(ValueError, match='unknown'):
        AttentionStatsHook(measures=('nope', ))
