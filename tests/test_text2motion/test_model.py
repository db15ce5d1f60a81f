"""TextToMotion: build, loss, padding independence, sampling past the
training length, the configs through mmengine's Runner, tools/text2pose.py."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.structures import BaseDataElement

from convattn_mm.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FIXTURE_CFG = osp.join(ROOT, 'configs', 'text2motion',
                       't2m-deltaattn-tiny_1xb32_motion-fixture.py')


def tiny_model(**denoiser):
    den = dict(type='convattn_mm.MotionDenoiser', embed_dims=32, depth=3,
               num_heads=2, kernel_size=5, global_every=3)
    den.update(denoiser)
    return MODELS.build(dict(
        type='convattn_mm.TextToMotion',
        text_encoder=dict(type='convattn_mm.HashedWordEncoder',
                          embed_dims=32, vocab_size=64, num_layers=1,
                          num_heads=2),
        denoiser=den, num_train_timesteps=50, num_sample_steps=3))


def _batch(lengths, D=263, seed=0):
    g = torch.Generator().manual_seed(seed)
    captions = ['a person walks forward', 'someone waves with the left hand',
                'a man sits down']
    return dict(inputs=[torch.randn(L, D, generator=g) for L in lengths],
                data_samples=[
                    BaseDataElement(metainfo=dict(caption=captions[i % 3]))
                    for i in range(len(lengths))
                ])


def test_loss_and_predict():
    torch.manual_seed(0)
    model = tiny_model()
    data = model.data_preprocessor(_batch([20, 13]), True)
    assert data['inputs'].shape == (2, 20, 263)
    assert data['lengths'].tolist() == [20, 13]
    loss = model(**data, mode='loss')['loss']
    loss.backward()
    grads = [n for n, p in model.named_parameters() if p.grad is not None]
    assert any(n.startswith('text_encoder.') for n in grads)
    assert any('.attn.' in n for n in grads) and any('.cross.' in n
                                                    for n in grads)
    out = model(**model.data_preprocessor(_batch([20, 13])), mode='predict')
    assert out[1].pred_motion.shape == (13, 263)
    assert out[1].gt_motion.shape == (13, 263) and out[1].pred_length == 13


def test_denoiser_ignores_padding():
    """Valid frames' outputs do not depend on the padded frames."""
    torch.manual_seed(0)
    den = tiny_model().denoiser.double()
    text = dict(tokens=torch.randn(2, 4, 32, dtype=torch.float64),
                mask=torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]).bool(),
                pooled=torch.randn(2, 32, dtype=torch.float64))
    x = torch.randn(2, 30, 263, dtype=torch.float64)
    lengths = torch.tensor([30, 17])
    t = torch.tensor([5, 40])
    out = den(x, t, text, lengths)
    x2 = x.clone()
    x2[1, 17:] = 100 * torch.randn(13, 263, dtype=torch.float64)
    out2 = den(x2, t, text, lengths)
    assert (out2[1, :17] - out[1, :17]).abs().max() <= 1e-6
    assert (out2[1, 17:] - out[1, 17:]).abs().max() > 1e-3  # not vacuous
    alone = den(x[1:, :17], t[1:], {k: v[1:] for k, v in text.items()},
                lengths[1:])
    assert (alone[0] - out[1, :17]).abs().max() <= 1e-6


def test_samples_past_training_length_and_absolute_table_cannot():
    torch.manual_seed(0)
    model = tiny_model().eval()
    x = model.generate(['a person walks'], [300])
    assert x.shape == (1, 300, 263) and torch.isfinite(x).all()
    learned = tiny_model(abs_pos='learned', abs_pos_len=64).eval()
    with pytest.raises(ValueError, match='300 frames.*abs_pos_len'):
        learned.generate(['a person walks'], [300])


def test_guidance_uses_empty_caption():
    model = tiny_model().eval()
    seen = []
    enc = model.text_encoder.forward
    model.text_encoder.forward = lambda c: seen.append(list(c)) or enc(c)
    model.generate(['a person walks'], [8], guidance_scale=2.0)
    assert seen == [['a person walks', '']]
    seen.clear()
    model.generate(['a person walks'], [8], guidance_scale=1.0)
    assert seen == [['a person walks']]


def test_bad_arguments():
    with pytest.raises(ValueError, match='abs_pos'):
        tiny_model(abs_pos='table')
    with pytest.raises(ValueError, match='num_sample_steps=0'):
        MODELS.build(dict(
            type='convattn_mm.TextToMotion',
            text_encoder=dict(type='convattn_mm.HashedWordEncoder',
                              embed_dims=32),
            denoiser=dict(type='convattn_mm.MotionDenoiser', embed_dims=32),
            num_sample_steps=0))


def test_clip_encoder_needs_transformers():
    try:
        import transformers  # noqa: F401
        pytest.skip('transformers is installed (no CLIP weights here)')
    except ImportError:
        pass
    with pytest.raises(ImportError, match='pip install transformers'):
        MODELS.build(dict(type='convattn_mm.CLIPTextEncoder',
                          pretrained='some/clip'))


@pytest.mark.parametrize('name', [
    't2m-deltaattn_1xb64_humanml3d.py', 't2m-deltaattn_1xb64_kit.py'
])
def test_dataset_configs_build(name):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'text2motion', name))
    cfg.model.stats_root = None
    model = MODELS.build(cfg.model)
    fmt = 'kit' if 'kit' in name else 'humanml3d'
    assert model.fmt.name == fmt
    assert cfg.train_dataloader.dataset.motion_format == fmt
    assert model.denoiser.out_proj.out_features == model.fmt.feature_dim


@pytest.fixture(scope='module')
def trained_fixture(humanml3d_root, tmp_path_factory):
    """Two iterations of the fixture config through the Runner."""
    from mmengine.runner import Runner
    work = str(tmp_path_factory.mktemp('t2m_work'))
    cfg = Config.fromfile(FIXTURE_CFG)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = humanml3d_root
    cfg.model.stats_root = humanml3d_root
    cfg.model.num_sample_steps = 2
    cfg.model.denoiser.update(embed_dims=32, depth=3)
    cfg.train_dataloader.batch_size = 4
    cfg.val_dataloader.batch_size = 4
    cfg.train_cfg = dict(by_epoch=False, max_iters=2, val_interval=2)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        by_epoch=False, interval=2)
    cfg.work_dir = work
    runner = Runner.from_cfg(cfg)
    runner.train()
    return work, cfg


def test_fixture_config_trains_validates_and_resumes(trained_fixture):
    from mmengine.runner import Runner

    from convattn_mm.compat.checkpoints import read_weights_only
    work, cfg = trained_fixture
    ckpt = read_weights_only(osp.join(work, 'iter_2.pth'))
    assert 'denoiser.blocks.0.attn.qkv.weight' in ckpt['state_dict']
    assert ckpt['state_dict']['std'].shape == (263, )
    cfg = cfg.copy()
    cfg.train_cfg = dict(by_epoch=False, max_iters=3, val_interval=10)
    cfg.resume = True
    cfg.load_from = osp.join(work, 'iter_2.pth')
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 3


def test_text2pose_tool(trained_fixture, tmp_path):
    import importlib.util
    work, _ = trained_fixture
    spec = importlib.util.spec_from_file_location(
        'text2pose', osp.join(ROOT, 'tools', 'text2pose.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = str(tmp_path / 'new_folder' / 'wave.gif')  # the tool creates it
    config = osp.join(work, osp.basename(FIXTURE_CFG))  # as the Runner ran
    written = tool.main([config, osp.join(work, 'iter_2.pth'),
                         'a person waves with the right hand', '--seconds',
                         '1', '--steps', '2', '--out', out])
    assert written[0] == out and all(osp.getsize(p) > 0 for p in written)
    assert np.load(str(tmp_path / 'new_folder' /
                       'wave_joints.npy')).shape == (20, 22, 3)
    assert np.load(str(tmp_path / 'new_folder' /
                       'wave_features.npy')).shape == (20, 263)
    pose = str(tmp_path / 'pose.gif')
    written = tool.main([config, osp.join(work, 'iter_2.pth'),
                         'a person sits down', '--frames', '1', '--steps',
                         '2', '--out', pose])
    assert not osp.exists(pose) and osp.exists(str(tmp_path / 'pose.png'))
    assert np.load(str(tmp_path / 'pose_joints.npy')).shape == (1, 22, 3)
