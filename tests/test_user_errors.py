"""What users get wrong gets a clear error, and valid edge cases run.

Each case here was measured as a bare ``TypeError``, a ``ZeroDivisionError``,
a torch shape error or a silent wrong build before; now the error names the
argument (and, for typos, the closest allowed key or name), and an empty
batch returns an empty output of the right shape everywhere."""
import subprocess
import sys
import textwrap

import pytest
import torch

import convattn_mm.models as M
from convattn_mm.ops import BACKENDS, backend_support, neighborhood_attention
from convattn_mm.ops.reference import reference_attention  # noqa: F401
from convattn_mm.registry import MODELS, build_module

from .test_registered_modules import CASES, _build, _outputs


# ------------------------------------------------------------ registry
def test_unknown_keyword_names_closest_and_allowed_keys():
    with pytest.raises(TypeError) as err:
        build_module(dict(type='RelPosAttention', embed_dim=64, num_heads=4))
    msg = str(err.value)
    assert "RelPosAttention got unexpected keyword argument(s) 'embed_dim' " \
        "(did you mean 'embed_dims'?)" in msg
    assert "'num_heads'" in msg and "'pos_encoding'" in msg  # allowed keys


@pytest.mark.parametrize('name', sorted(
    n for n, c in MODELS.module_dict.items() if isinstance(c, type)))
def test_every_registered_class_checks_its_keywords(name):
    """One mechanism (the registry's), not per-class code: every registered
    class rejects a misspelt keyword before building anything."""
    cls = MODELS.get(name)
    with pytest.raises(TypeError, match=r'unexpected keyword argument\(s\) '
                       r"'no_such_key'.*allowed keys"):
        cls(no_such_key=1)


def test_missing_argument_names_class_and_arguments():
    with pytest.raises(TypeError, match=r"RelPosAttention: missing a required"
                       r" argument: 'num_heads'; its arguments are"):
        M.RelPosAttention(8)


def test_typo_in_name_suggests_the_registered_one():
    with pytest.raises(KeyError, match=r"did you mean \['convattn_mm\."
                       r"ConvAttnNet'"):
        MODELS.build(dict(type='convattn_mm.ConvAtnNet'))
    with pytest.raises(KeyError, match='did you mean'):
        build_module(dict(type='RelPosAtention', embed_dims=8, num_heads=2))


def test_valid_names_and_keys_still_build():
    layer = MODELS.build(dict(type='convattn_mm.RelPosAttention',
                              embed_dims=8, num_heads=2, kernel_size=3))
    assert layer(torch.randn(1, 4, 4, 8)).shape == (1, 4, 4, 8)
    assert MODELS.get('NoSuchThingAtAll') is None  # far from every name


def _run(code):
    proc = subprocess.run([sys.executable, '-W', 'ignore', '-c',
                           textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_errors_from_mmpretrain_and_mmdet_config_builds():
    """From other packages' configs (their default scope, their MODELS):
    the typo, the unknown keyword and the bare name each say what to do."""
    out = _run('''
        from mmengine.registry import init_default_scope
        import mmpretrain.models  # noqa
        from mmpretrain.registry import MODELS as PRETRAIN
        init_default_scope('mmpretrain')

        def classifier(**backbone):
            return dict(type='ImageClassifier', backbone=backbone,
                        neck=dict(type='GlobalAveragePooling'),
                        head=dict(type='LinearClsHead', num_classes=2,
                                  in_channels=96))
        for backbone in (
                dict(type='convattn_mm.ConvAtnNet', arch='demo'),
                dict(type='convattn_mm.ConvAttnNet', arch='demo',
                     drop_path=0.1),
                dict(type='ConvAttnNet', arch='demo')):
            try:
                PRETRAIN.build(classifier(**backbone))
            except (KeyError, TypeError) as err:
                print(type(err).__name__, str(err))
        net = PRETRAIN.build(classifier(type='convattn_mm.ConvAttnNet',
                                        arch='demo'))
        print('built', type(net.backbone).__name__)

        import mmdet.models  # noqa
        from mmdet.registry import MODELS as DET
        init_default_scope('mmdet')
        for backbone in (dict(type='convattn_mm.SAResNet', depht=18),
                         dict(type='SAResNet', depth=18)):
            try:
                DET.build(dict(type='RetinaNet', backbone=backbone,
                               neck=None, bbox_head=None))
            except (KeyError, TypeError) as err:
                print(type(err).__name__, str(err))
    ''').splitlines()
    assert out[0].startswith('KeyError') and \
        "did you mean ['convattn_mm.ConvAttnNet'" in out[0]
    assert out[1].startswith('TypeError') and \
        "'drop_path' (did you mean 'drop_path_rate'?)" in out[1]
    assert out[2].startswith('KeyError') and \
        "type='convattn_mm.ConvAttnNet'" in out[2]
    assert out[3] == 'built ConvAttnNet'
    assert out[4].startswith('TypeError') and \
        "'depht' (did you mean 'depth'?)" in out[4]
    assert out[5].startswith('KeyError') and \
        "type='convattn_mm.SAResNet'" in out[5]


# ------------------------------------------------------------ sizes
@pytest.mark.parametrize('build, message', [
    (lambda: M.RelPosAttention(8, 2, head_dims=0), 'head_dims=0'),
    (lambda: M.RelPosAttention(8, 0), 'num_heads=0'),
    (lambda: M.RelPosAttention(-8, 2), 'embed_dims=-8'),
    (lambda: M.RelPosAttention(8, 2, out_dims=-1), 'out_dims=-1'),
    (lambda: M.SAResNet(base_channels=0), 'base_channels=0'),
    (lambda: M.SAResNet(num_heads=0), 'num_heads=0'),
    (lambda: M.ConvAttnNet(arch=dict(
        embed_dims=[8] * 4, depths=[1, -1, 1, 1], num_heads=[2] * 4,
        mixers=['conv'] * 4, mlp_ratio=2)), r'arch.depths\[1\]=-1'),
    (lambda: M.ConvAttnNet(arch=dict(
        embed_dims=[8, 0, 8, 8], depths=[1] * 4, num_heads=[2] * 4,
        mixers=['conv'] * 4, mlp_ratio=2)), 'embed_dims=0'),
    (lambda: M.IsotropicAttnNet(num_heads=8, embed_dims=4, num_layers=1),
     'embed_dims=4 < num_heads=8'),
])
def test_bad_size_is_a_value_error_naming_it(build, message):
    with pytest.raises(ValueError, match=message):
        build()


# ------------------------------------------------------------ empty batch
def _runnable(backend, **kw):
    q = torch.randn(1, 8, 8, 2, 4)
    from convattn_mm.ops import make_window
    from convattn_mm.ops.functional import _request
    spec = make_window((8, 8), kw.get('kernel_size', 3), 1,
                       kw.get('border', 'shift'), kw.get('query_stride', 1))
    return backend_support(spec, _request(q, kw.get('pos_bias'), None,
                                          (q, ))).reasons[backend] is None


@pytest.mark.parametrize('backend', sorted(BACKENDS))
@pytest.mark.parametrize('border', ['shift', 'mask', 'zeros'])
@pytest.mark.parametrize('query_stride', [1, 2])
def test_empty_batch_on_every_backend(backend, border, query_stride):
    kw = dict(kernel_size=3, border=border, query_stride=query_stride)
    if not _runnable(backend, **kw):
        pytest.skip(f'{backend} cannot run border={border}, '
                    f'query_stride={query_stride} at all')
    q = torch.randn(0, 8, 7, 2, 4)
    v = torch.randn(0, 8, 7, 2, 5)
    out = neighborhood_attention(q, q, v, backend=backend, **kw)
    want = (0, -(-8 // query_stride), -(-7 // query_stride), 2, 5)
    assert out.shape == want


@pytest.mark.parametrize('name', sorted(CASES))
def test_empty_batch_in_every_registered_module(name):
    cfg, shape, *run = CASES[name]
    run = run[0] if run else None
    net = _build(cfg)
    net.train()
    _outputs(net, torch.randn((2, ) + tuple(shape[1:])), run)  # BN stats
    net.eval()
    with torch.no_grad():
        full = _outputs(net, torch.randn((2, ) + tuple(shape[1:])), run)
        empty = _outputs(net, torch.randn((0, ) + tuple(shape[1:])), run)
    assert [e.shape for e in empty] == [(0, ) + f.shape[1:] for f in full]
