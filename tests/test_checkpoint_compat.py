"""Checkpoints written before the package's layout changed still load.

``tests/data/compat_checkpoints.pth`` was written by
``tests/data/make_compat_checkpoints.py`` with the code of the day (before
issue 10 moved files): one small instance of every registered module, its
weights (conv-init centres and bias tables included), an input, and the
outputs that code computed. Today's code must build each config, load the
weights strictly and reproduce the outputs.
"""
import os.path as osp

import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import CheckpointLoader

import convattn_mm.models  # noqa: F401
from convattn_mm.registry import MODELS, build_module

FIXTURE = osp.join(osp.dirname(__file__), 'data', 'compat_checkpoints.pth')


@pytest.fixture(scope='module')
def checkpoint():
    # weights_only=True: no class of this package (or mmengine's) is pickled
    return torch.load(FIXTURE, map_location='cpu', weights_only=True)


def test_fixture_covers_every_registered_model(checkpoint):
    built = {case['cfg']['type'] for case in checkpoint['cases'].values()}
    encodings = {case['cfg'].get('pos_encoding', {}).get('type')
                 for case in checkpoint['cases'].values()
                 if isinstance(case['cfg'].get('pos_encoding'), dict)}
    blocks = {'TemporalAttnBlock', 'VolumeAttnBlock'}  # inside their nets
    assert set(MODELS.module_dict) - built - encodings - blocks - set(
        NOT_IN_FIXTURE) == set()


#: registered modules whose forward takes more than one tensor (captions,
#: diffusion steps, data dicts): their build, forward, backward and empty
#: batch are checked in tests/test_registered_modules.py instead
NOT_IN_FIXTURE = {
    'CrossAttention': 'forward takes a context',
    'HashedWordEncoder': 'forward takes captions',
    'CLIPTextEncoder': 'needs transformers and downloaded weights',
    'MotionDenoiser': 'forward takes steps, text and lengths',
    'TextToMotion': 'a full model (data samples, diffusion)',
    'MotionDataPreprocessor': 'no weights',
}


@pytest.mark.parametrize('name', [
    'bias_table', 'quadratic', 'relative_keys', 'rope', 'log_cpb', 'rank1',
    'conv_attention', 'gated_conv_attention', 'convattn_net', 'sa_resnet',
    'isotropic', 'temporal', 'volume', 'converted_resnet', 'motion_attn_net',
    'tcn_attn_net'
])
def test_old_checkpoint_reproduces_outputs(checkpoint, name):
    case = checkpoint['cases'][name]
    torch.manual_seed(1)  # a different init: only the loaded weights count
    net = build_module(case['cfg'])
    net.load_state_dict(case['state_dict'], strict=True)
    net.eval()
    with torch.no_grad():
        out = net(case['input'])
    outs = [out] if isinstance(out, torch.Tensor) else list(out)
    assert len(outs) == len(case['outputs'])
    for got, want in zip(outs, case['outputs']):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_runner_checkpoint_loads_through_mmengine():
    """The Runner-style file (meta, state_dict, message hub) loads through
    mmengine's loader under weights_only, and the hub's buffers come back."""
    ckpt = CheckpointLoader.load_checkpoint(FIXTURE, map_location='cpu')
    assert ckpt['meta']['iter'] == 2
    net = build_module(ckpt['cases']['convattn_net']['cfg'])
    net.load_state_dict(ckpt['state_dict'], strict=True)
    hub = MessageHub.get_instance('test_checkpoint_compat')
    hub.load_state_dict(ckpt['message_hub'])
    buf = hub.log_scalars['train/loss']
    assert isinstance(buf, HistoryBuffer)
    assert buf.mean() == pytest.approx(1.0)


def test_reading_weights_only_keeps_the_applied_allow_list():
    """``read_weights_only`` allows the package's globals for one load and
    leaves those :func:`compat.apply` installed for good in place."""
    from convattn_mm import compat
    compat.apply()
    before = list(torch.serialization.get_safe_globals())
    ckpt = compat.read_weights_only(FIXTURE)
    assert ckpt['meta']['iter'] == 2
    assert torch.serialization.get_safe_globals() == before
