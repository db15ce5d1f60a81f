"""tools/convert_cnn.py end to end, including a CNN trained here on
scikit-learn's digits and saved by mmengine's Runner."""
import copy
import importlib.util
import os.path as osp

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

CONFIG = """
default_scope = 'mmpretrain'
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet', depth=18, stem_channels=8, base_channels=8),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=10, in_channels=64,
              loss=dict(type='CrossEntropyLoss')))
data_preprocessor = dict(num_classes=10, mean=[20.0, 20.0, 20.0],
                         std=[50.0, 50.0, 50.0])
test_pipeline = [dict(type='Resize', scale=32), dict(type='PackInputs')]
"""


def _tool():
    spec = importlib.util.spec_from_file_location(
        'convert_cnn', osp.join(ROOT, 'tools', 'convert_cnn.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _digits(split, size=32):
    from sklearn.datasets import load_digits
    images = torch.from_numpy(load_digits().images).float() * (255 / 16)
    labels = torch.from_numpy(load_digits().target)
    x = torch.nn.functional.interpolate(images[:, None], size=(size, size),
                                        mode='bilinear')
    x = x.clamp(0, 255).round().to(torch.uint8).expand(-1, 3, -1, -1)
    n = 1400
    sl = slice(0, n) if split == 'train' else slice(n, None)
    return x[sl].contiguous(), labels[sl]


def _random_checkpoint(tmp_path):
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import save_checkpoint
    cfg_path = str(tmp_path / 'tiny_resnet.py')
    with open(cfg_path, 'w') as f:
        f.write(CONFIG)
    cfg = Config.fromfile(cfg_path)
    init_default_scope('mmpretrain')
    model = MODELS.build(dict(cfg.model, data_preprocessor=dict(
        type='ClsDataPreprocessor', **cfg.data_preprocessor)))
    model.init_weights()
    ckpt = str(tmp_path / 'tiny.pth')
    save_checkpoint(dict(meta=dict(), state_dict=model.state_dict()), ckpt)
    return cfg_path, ckpt


@pytest.mark.parametrize('init', ['exact', 'quadratic', 'gated'])
def test_tool_end_to_end(tmp_path, capsys, init):
    cfg_path, ckpt = _random_checkpoint(tmp_path)
    out = str(tmp_path / 'out')
    rc = _tool().main([cfg_path, ckpt, '--out-dir', out, '--init', init,
                       '--num-images', '4'])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert '[1/20] backbone.conv1: converted 7x7 conv -> 49 heads' in text
    assert '17 converted, 3 skipped' in text
    assert 'check images' in text and '4 sklearn digits at 32x32' in text
    assert 'rebuilt from config, max |Δ|      0' in text
    assert osp.exists(osp.join(out, f'tiny_resnet_convattn-{init}.py'))
    assert osp.exists(osp.join(out, f'tiny_resnet_convattn-{init}.pth'))
    written = open(osp.join(out, f'tiny_resnet_convattn-{init}.py')).read()
    assert "type='convattn_mm.ConvToAttention'" in written
    assert 'load_from' in written


def test_tool_fails_above_tolerance_and_on_wrong_checkpoint(tmp_path,
                                                             capsys):
    cfg_path, ckpt = _random_checkpoint(tmp_path)
    tool = _tool()
    rc = tool.main([cfg_path, ckpt, '--out-dir', str(tmp_path / 'o'),
                    '--init', 'quadratic', '--tol', '1e-9',
                    '--num-images', '2'])
    assert rc == 1 and 'FAILED' in capsys.readouterr().out
    wrong = str(tmp_path / 'wrong.pth')
    torch.save(dict(state_dict={'backbone.conv1.weight': torch.ones(1)}),
               wrong)
    with pytest.raises(KeyError, match=r'does not fit the config\'s model: '
                       r'missing keys'):
        tool.main([cfg_path, wrong, '--out-dir', str(tmp_path / 'o')])
    sd = torch.load(ckpt, weights_only=True)['state_dict']
    sd['head.fc.bias'] = torch.zeros(3)
    torch.save(dict(state_dict=sd), wrong)
    with pytest.raises(ValueError, match=r"other tensor shapes.*head.fc.bias"
                       r": \(3,\) vs \(10,\)"):
        tool.main([cfg_path, wrong, '--out-dir', str(tmp_path / 'o')])
    rc = tool.main([cfg_path, ckpt, '--out-dir', str(tmp_path / 'o'),
                    '--select', 'nothing.matches'])
    assert rc == 1 and 'nothing was converted' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        tool.main([cfg_path, ckpt, '--out-dir', 'x', '--init', 'hard'])


@pytest.mark.slow
def test_trained_digits_cnn_converts_with_identical_predictions(tmp_path):
    """Train a small ResNet on digits with mmengine's Runner, convert its
    checkpoint with the tool, compare predictions on the whole test split."""
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import Runner, load_checkpoint
    from mmpretrain.structures import DataSample

    from convattn_mm.convert import load_cnn_state_dict
    cfg_path = str(tmp_path / 'tiny_resnet.py')
    with open(cfg_path, 'w') as f:
        f.write(CONFIG)
    cfg = Config.fromfile(cfg_path)
    x, y = _digits('train')
    train = [dict(inputs=x[i], data_samples=DataSample().set_gt_label(
        int(y[i]))) for i in range(len(y))]
    loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True,
                                         collate_fn=pseudo_collate)
    work = str(tmp_path / 'work')
    runner = Runner(
        model=copy.deepcopy(cfg.model), work_dir=work, train_dataloader=loader,
        train_cfg=dict(by_epoch=True, max_epochs=3),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9,
                                          weight_decay=1e-4)),
        data_preprocessor=copy.deepcopy(cfg.data_preprocessor),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           interval=3),
                           logger=dict(type='LoggerHook', interval=50)),
        default_scope='mmpretrain', randomness=dict(seed=0))
    runner.train()
    ckpt = osp.join(work, 'epoch_3.pth')
    assert osp.exists(ckpt)
    out = str(tmp_path / 'out')
    rc = _tool().main([cfg_path, ckpt, '--out-dir', out,
                       '--trust-checkpoint'])
    assert rc == 0

    init_default_scope('mmpretrain')
    cfg = Config.fromfile(cfg_path)  # the Runner edited the first copy
    dp = dict(type='ClsDataPreprocessor', **cfg.data_preprocessor)
    original = MODELS.build(dict(cfg.model, data_preprocessor=dp))
    # a Runner checkpoint holds message-hub objects: a trusted-source load
    original.load_state_dict(load_cnn_state_dict(ckpt, trust=True)[0])
    new_cfg = Config.fromfile(osp.join(out, 'tiny_resnet_convattn-exact.py'))
    converted = MODELS.build(dict(new_cfg.model, data_preprocessor=dp))
    load_checkpoint(converted, new_cfg.load_from, map_location='cpu',
                    strict=True, logger='silent')
    xt, yt = _digits('test')
    with torch.no_grad():
        outs = []
        for m in (original.eval(), converted.eval()):
            data = m.data_preprocessor(dict(inputs=list(xt)), False)
            outs.append(m(data['inputs'], mode='tensor'))
    ref, got = outs
    assert (ref.argmax(1) == yt).float().mean() > 0.6  # it learned digits
    assert torch.equal(ref.argmax(1), got.argmax(1))
    assert (got - ref).abs().max() <= 1e-5 * ref.abs().max()
