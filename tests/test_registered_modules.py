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
)


def covered(cases):
    names = set()
    for cfg, _ in cases.values():
        names.add(cfg['type'])
        enc = cfg.get('pos_encoding')
        if isinstance(enc, dict):
            names.add(enc['type'])
    return names


def test_every_registered_module_has_a_case():
    missing = set(MODELS.module_dict) - covered(CASES)
    assert not missing, f'registered without a test case: {sorted(missing)}'
    encodings = {n for n, c in MODELS.module_dict.items()
                 if isinstance(c, type) and issubclass(c, RelPosEncoding)}
    assert len(encodings) >= 5  # the walk sees the encodings


def _outputs(net, x):
    out = net(x)
    return [out] if isinstance(out, torch.Tensor) else list(out)


def _build(cfg):
    torch.manual_seed(0)
    net = build_module(cfg)
    net.init_weights()
    return net


@pytest.mark.parametrize('name', sorted(CASES))
def test_registered_module(name):
    cfg, shape = CASES[name]
    net = _build(cfg)
    x = torch.randn((2, ) + tuple(shape[1:]))  # BatchNorm trains on >1

    # forward and backward: every trainable parameter gets a gradient
    net.train()
    loss = sum(o.float().square().mean() for o in _outputs(net, x))
    loss.backward()
    no_grad = [n for n, p in net.named_parameters()
               if p.requires_grad and p.grad is None]
    assert not no_grad, f'parameters without a gradient: {no_grad}'

    net.eval()
    with torch.no_grad():
        want = _outputs(net, x)

    def same(other):
        other.eval()
        with torch.no_grad():
            got = _outputs(other, x)
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
