"""Every config under configs/ builds its model; the demo config trains one
iteration through mmengine's Runner on the digits set."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: the mmpretrain (classification) folders; detection / pose configs have
#: their own tests
FOLDERS = ('convattn_net', 'sa_resnet', 'isotropic_attn')
CONFIGS = sorted(p for f in FOLDERS
                 for p in glob.glob(osp.join(ROOT, 'configs', f, '*.py')))
DEMO = osp.join(ROOT, 'configs', 'convattn_net',
                'convattnnet-demo_1xb64_digits.py')


def test_configs_found_and_named():
    assert len(CONFIGS) >= 10
    import re
    pattern = re.compile(r'^[a-z0-9-]+_\d+xb\d+_[a-z0-9-]+\.py$')
    for p in CONFIGS:
        assert pattern.match(osp.basename(p)), p


@pytest.mark.parametrize('path', CONFIGS,
                         ids=[osp.basename(p) for p in CONFIGS])
def test_config_builds_model(path):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.model.backbone.type.startswith('convattn_mm.')
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    assert type(model.backbone).__module__.startswith('convattn_mm.')


def test_demo_config_trains_one_iteration(tmp_path):
    from mmengine.runner import Runner
    cfg = Config.fromfile(DEMO)
    cfg.work_dir = str(tmp_path)
    cfg.train_cfg = dict(by_epoch=False, max_iters=1, val_interval=1)
    cfg.param_scheduler = []
    cfg.train_dataloader.batch_size = 8
    cfg.val_dataloader.batch_size = 120
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1,
                                        by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    runner = Runner.from_cfg(cfg)
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    runner.train()
    after = runner.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any('backbone.stages.1.blocks.0.mixer.qkv' in k for k in changed)
    assert osp.exists(osp.join(tmp_path, 'iter_1.pth'))
    metrics = runner.val_loop.run()
    assert 0 <= metrics['accuracy/top1'] <= 100
