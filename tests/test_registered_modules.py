"""Every module registered in ``convattn_mm.registry.MODELS``, at a small
size: it builds, runs forward and backward, round-trips through its
``state_dict`` (saved and loaded with ``weights_only=True``), deep-copies
and pickles, each time computing the same output. A new module is tested by
being registered and given a small config below (the first test fails
until it has one)."""
import copy
import importlib.util
import io
import os.path as osp
import pickle

import pytest
import torch

import convattn_mm.convert  # noqa: F401  (registers ConvToAttention)
import convattn_mm.models  # noqa: F401
from convattn_mm.models.encodings import RelPosEncoding
from convattn_mm.registry import MODELS, build_module


def _fixture_cases():
    path = osp.join(osp.dirname(__file__), 'data',
                    'make_compat_checkpoints.py')
    spec = importlib.util.spec_from_file_location('compat_cases', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.CASES


#: name -> (config, input shape): the checkpoint fixture's small models
#: (every layer, backbone, converter and, through RelPosAttention, every
#: encoding) plus the blocks
CASES = dict(_fixture_cases())
CASES.update(
    temporal_block=(dict(type='TemporalAttnBlock', embed_dims=8,
                         num_heads=2, kernel_size=3), (2, 7, 8)),
    volume_block=(dict(type='VolumeAttnBlock', embed_dims=8, num_heads=2,
                       kernel_size=3), (2, 3, 4, 4, 8)),
    motion_attn_net=(dict(type='MotionAttnNet', in_channels=3, embed_dims=8,
                          depth=1, num_heads=2, num_keypoints=5,
                          kernel_size=3), (2, 6, 5, 3)),
    tcn_attn_net=(dict(type='TCNAttnNet', in_channels=6, stem_channels=8,
                       num_blocks=1, kernel_sizes=(3, 3), dropout=0.0),
                  (2, 6, 11)),
)


def _text(B=2, S=3, C=8):
    """A caption context for a batch of ``B <= 2`` (B may be 0)."""
    g = torch.Generator().manual_seed(3)
    return dict(tokens=torch.randn(2, S, C, generator=g)[:B],
                mask=torch.tensor([[True, True, False], [True] * 3])[:B],
                pooled=torch.randn(2, C, generator=g)[:B])


_T2M_ENCODER = dict(type='HashedWordEncoder', embed_dims=8, vocab_size=16,
                    num_layers=1, num_heads=2)
_T2M_DENOISER = dict(type='MotionDenoiser', embed_dims=8, depth=2,
                     num_heads=2, kernel_size=3, global_every=2)
_CAPTIONS = ['a person walks', '']


def _steps(x):
    """Diffusion steps and motion lengths for the batch of ``x``."""
    B = x.shape[0]
    return torch.tensor([3, 9])[:B], torch.tensor([7, 5])[:B]


#: cases whose forward takes more than the tensor: (config, input shape,
#: run(net, x)); every run follows the batch size of ``x`` (B may be 0)
CASES.update(
    cross_attention=(dict(type='CrossAttention', embed_dims=8,
                          context_dims=8, num_heads=2), (2, 5, 8),
                     lambda net, x: net(x, _text(len(x))['tokens'],
                                        _text(len(x))['mask'])),
    hashed_word_encoder=(_T2M_ENCODER, (2, 1, 1),
                         # pooled: the token count depends on the captions
                         lambda net, x: [net(_CAPTIONS[:len(x)])['pooled']
                                         [:, None] * x]),
    motion_denoiser=(dict(_T2M_DENOISER, in_dims=6, text_dims=8),
                     (2, 7, 6),
                     lambda net, x: net(x, _steps(x)[0], _text(len(x)),
                                        _steps(x)[1])),
    text_to_motion=(dict(type='TextToMotion', text_encoder=_T2M_ENCODER,
                         denoiser=_T2M_DENOISER, num_train_timesteps=10,
                         num_sample_steps=2), (2, 7, 263),
                    lambda net, x: net.predict_x0(
                        x, _steps(x)[0],
                        net.text_encoder(_CAPTIONS[:len(x)]), _steps(x)[1])),
    motion_data_preprocessor=(dict(type='MotionDataPreprocessor'),
                              (2, 7, 4),
                              lambda net, x: net(dict(inputs=[
                                  x[i, :7 - 2 * i] for i in range(len(x))
                              ] if len(x) else x))['inputs']),
)
#: registered modules that cannot be built here, with the reason
NOT_BUILDABLE = {
    'CLIPTextEncoder': 'needs transformers and CLIP weights the user '
                       'downloads',
}


def covered(cases):
    names = set()
    for cfg, *_ in cases.values():
        names.add(cfg['type'])
        enc = cfg.get('pos_encoding')
        if isinstance(enc, dict):
            names.add(enc['type'])
    return names


def test_every_registered_module_has_a_case():
    missing = set(MODELS.module_dict) - covered(CASES) - set(NOT_BUILDABLE)
    assert not missing, f'registered without a test case: {sorted(missing)}'
    encodings = {n for n, c in MODELS.module_dict.items()
                 if isinstance(c, type) and issubclass(c, RelPosEncoding)}
    assert len(encodings) >= 5  # the walk sees the encodings


def _outputs(net, x, run=None):
    out = net(x) if run is None else run(net, x)
    return [out] if isinstance(out, torch.Tensor) else list(out)


def _build(cfg):
    torch.manual_seed(0)
    net = build_module(cfg)
    if hasattr(net, 'init_weights'):  # data preprocessors have none
        net.init_weights()
    return net


@pytest.mark.parametrize('name', sorted(CASES))
def test_registered_module(name):
    cfg, shape, *run = CASES[name]
    run = run[0] if run else None
    net = _build(cfg)
    x = torch.randn((2, ) + tuple(shape[1:]))  # BatchNorm trains on >1
    if run is not None:
        x.requires_grad_()

    # forward and backward: every trainable parameter gets a gradient
    net.train()
    loss = sum(o.float().square().mean()
               for o in _outputs(net, x, run))
    loss.backward()
    no_grad = [n for n, p in net.named_parameters()
               if p.requires_grad and p.grad is None]
    assert not no_grad, f'parameters without a gradient: {no_grad}'

    net.eval()
    with torch.no_grad():
        want = _outputs(net, x, run)

    def same(other):
        other.eval()
        with torch.no_grad():
            got = _outputs(other, x, run)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w)

    # state_dict round trip through a weights_only load
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    torch.manual_seed(1)
    fresh = build_module(cfg)
    fresh.load_state_dict(state, strict=True)
    same(fresh)

    same(copy.deepcopy(net))
    same(pickle.loads(pickle.dumps(net)))
