"""The RelPosAttention layer."""
import warnings

import pytest
import torch
from mmengine import Config

from convattn_mm.models.layers import RelPosAttention

ENCODINGS = [
    None,
    dict(type='RelativeBiasTable'),
    dict(type='QuadraticEncoding'),
    dict(type='QuadraticEncoding', mode='full'),
    dict(type='RelativeKeys'),
    dict(type='RoPE'),
    dict(type='RoPE', mode='mixed'),
    dict(type='LogCPB', hidden_dims=16),
]
IDS = ['none', 'bias', 'quad', 'quad-full', 'relkeys', 'rope', 'rope-mixed',
       'logcpb']


def _layer(**kw):
    args = dict(embed_dims=16, num_heads=2, kernel_size=5)
    args.update(kw)
    return RelPosAttention(**args)


@pytest.mark.parametrize('enc', ENCODINGS, ids=IDS)
@pytest.mark.parametrize('border', ['shift', 'mask', 'zeros'])
def test_fast_path_matches_reference_with_grads(enc, border):
    layer = _layer(pos_encoding=enc, border=border, dilation=(1, 2),
                   query_stride=(2, 1)).double()
    x = torch.randn(2, 9, 11, 16, dtype=torch.float64)
    results = []
    for backend in ('auto', 'reference'):
        layer.backend = backend
        layer.zero_grad()
        y = layer(x)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
         ).sum().backward()
        results.append((y.detach(), {n: p.grad.clone()
                                     for n, p in layer.named_parameters()}))
    (y0, g0), (y1, g1) = results
    assert y0.shape == (2, 5, 11, 16)
    torch.testing.assert_close(y0, y1)
    for name in g1:
        torch.testing.assert_close(g0[name], g1[name], msg=name)
        assert g0[name].abs().sum() > 0, f'{name} got no gradient'


@pytest.mark.parametrize('rank', [1, 3])
def test_other_ranks(rank):
    layer = _layer(rank=rank, kernel_size=3,
                   pos_encoding=dict(type='RelativeBiasTable'))
    x = torch.randn(1, *(7, 6, 5)[:rank], 16)
    y = layer(x)
    layer.backend = 'reference'
    torch.testing.assert_close(y, layer(x))


@pytest.mark.parametrize('enc', ENCODINGS, ids=IDS)
def test_translation_equivariance(enc):
    """Away from borders, shifting the input shifts the output."""
    layer = _layer(pos_encoding=enc, border='mask', kernel_size=3).double()
    x = torch.randn(1, 14, 14, 16, dtype=torch.float64)
    t = (2, 3)
    y1 = layer(x[:, :10, :10])
    y2 = layer(x[:, t[0]:t[0] + 10, t[1]:t[1] + 10])
    # queries whose windows lie inside both crops
    torch.testing.assert_close(y1[:, 3:9, 4:9], y2[:, 1:7, 1:6])


def test_recording_weights():
    layer = _layer(pos_encoding=dict(type='RelativeBiasTable'))
    x = torch.randn(2, 8, 9, 16)
    y = layer(x)
    assert layer._recorder is None
    with layer.recording([(0, 0), (4, 4)]) as rec:
        y2 = layer(x)
    torch.testing.assert_close(y, y2)
    assert len(rec.records) == 1
    r = rec.records[0]
    assert r['weights'].shape == (2, 2, 2, 25)
    torch.testing.assert_close(r['weights'].sum(-1), torch.ones(2, 2, 2))
    # shift border at the corner: offsets are all >= 0
    assert (r['offsets'][0] >= 0).all()
    assert (r['offsets'][1].abs() <= 2).all()
    layer(x)
    assert len(rec.records) == 1  # not recording any more
    with pytest.raises(ValueError, match=r'query \(9, 0\) is outside the '
                       r'output grid \(8, 9\)'):
        with layer.recording([(9, 0)]):
            layer(x)


def test_recorded_weights_reproduce_output():
    layer = _layer(pos_encoding=dict(type='RelativeKeys'), border='zeros')
    x = torch.randn(1, 6, 7, 16)
    with layer.recording() as rec:
        y = layer(x)
    r = rec.records[0]
    qkv = layer.qkv(x).reshape(1, -1, 3, 2, 8)
    v = qkv[:, :, 2].permute(0, 2, 1, 3)  # [B, H, N, D]
    keys = r['keys'].long()
    vv = v[:, :, keys.clamp(min=0)] * (keys >= 0)[..., None]
    o = torch.einsum('bhqk,bhqkd->bqhd', r['weights'], vv).reshape(1, 6, 7,
                                                                  16)
    torch.testing.assert_close(layer.proj(o), y)


def test_small_map_rules():
    x = torch.randn(1, 4, 12, 16)
    shrink = _layer(kernel_size=7, pos_encoding=dict(type='LogCPB',
                                                      hidden_dims=8))
    y = shrink(x)
    assert y.shape == x.shape
    spec, _ = shrink.window((4, 12))
    assert spec.axes[0].kernel == 4 and spec.axes[1].kernel == 7
    err = _layer(kernel_size=7, small_map='error')
    with pytest.raises(ValueError, match=r"small_map='error'; 'shrink' or "
                       r"'pad' adapt the window"):
        err(x)
    with pytest.raises(ValueError, match=r"small_map='pad' is exact only for "
                       r"border='zeros', got border='shift'"):
        _layer(small_map='pad')
    # pad is exact for zeros: compare against a big map's top-left corner
    pad = _layer(kernel_size=7, border='zeros', small_map='pad',
                 pos_encoding=dict(type='RelativeBiasTable'))
    small = torch.randn(1, 3, 5, 16)
    y_pad = pad(small)
    pad.small_map = 'error'
    big = torch.zeros(1, 9, 9, 16)
    big[:, :3, :5] = small
    # on the big map the extra positions are real tokens, so compare with
    # keys masked out: use the reference on the small map's own windows
    pad.small_map = 'pad'
    pad.backend = 'reference'
    torch.testing.assert_close(y_pad, pad(small))
    assert y_pad.shape == (1, 3, 5, 16)


def test_config_round_trip(tmp_path):
    cfg = Config(dict(layer=dict(type='convattn_mm.RelPosAttention',
                                 embed_dims=16, num_heads=2, kernel_size=(3, 5),
                                 pos_encoding=dict(type='RelativeBiasTable'))))
    path = tmp_path / 'layer.py'
    cfg.dump(str(path))
    loaded = Config.fromfile(str(path))
    from mmengine.registry import MODELS
    a = MODELS.build(cfg.layer)
    b = MODELS.build(loaded.layer)
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 6, 7, 16)
    torch.testing.assert_close(a(x), b(x))


def test_nchw_helper():
    layer = _layer(query_stride=2, out_dims=8)
    x = torch.randn(2, 16, 7, 9)
    y = layer.forward_nchw(x)
    assert y.shape == (2, 8, 4, 5)
    torch.testing.assert_close(y, layer(x.permute(0, 2, 3, 1)).permute(0, 3,
                                                                        1, 2))


def test_quadratic_on_natten_matches_bias_path():
    """Quadratic encoding as extra head dims (NATTEN) vs as a bias."""
    pytest.importorskip('natten')
    layer = _layer(kernel_size=5, pos_encoding=dict(type='QuadraticEncoding',
                                                    mode='full'))
    x = torch.randn(1, 12, 12, 16)
    with torch.no_grad():
        ref = layer(x)
        layer.backend = 'natten'
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            got = layer(x)
    # float32 bound from the docstring: ~1e-7 * alpha * (L/2)^2 * rank
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_quadratic_augmentation_exact_in_float64():
    from convattn_mm.models.encodings import QuadraticEncoding
    from convattn_mm.ops import make_window, attention_bhnd
    enc = QuadraticEncoding(num_heads=2, head_dims=4, rank=2, radius=(4, 4),
                            step=(1, 1), mode='full').double()
    spec = make_window((30, 30), 9)
    q = torch.randn(1, 2, 900, 4, dtype=torch.float64)
    k = torch.randn_like(q)
    ax = torch.arange(30, dtype=torch.float64)
    coords = torch.stack(torch.meshgrid(ax, ax, indexing='ij'), -1).reshape(
        -1, 2)
    qa, ka = enc.augment_qk(q, k, coords, coords, 0.5)
    got = attention_bhnd(qa, ka, q, spec, 0.5, backend='gather')
    bias = enc.pos_bias(spec.table_offsets())
    ref = attention_bhnd(q, k, q, spec, 0.5, bias, backend='reference')
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('kwargs,exc,match', [
    (dict(embed_dims=10, num_heads=3), ValueError,
     r'embed_dims=10 is not divisible by num_heads=3; choose num_heads'),
    (dict(kernel_size=4), ValueError, r'kernel_size=4: window sizes must be '
     r"odd or 'global'"),
    (dict(border='wrap'), ValueError, r"border='wrap' is not supported; "
     r"choose one of \['mask', 'shift', 'zeros'\]"),
    (dict(backend='triton'), ValueError, r"backend='triton' is not supported"),
    (dict(small_map='crop'), ValueError, r"small_map='crop' is not "
     r"supported; choose one of \['error', 'pad', 'shrink'\]"),
    (dict(rank=4), ValueError, r'rank=4 is not supported'),
    (dict(pos_encoding=dict(type='Sinusoidal')), KeyError,
     r"type='Sinusoidal' is not registered in convattn_mm.model"),
    (dict(pos_encoding=dict(type='QuadraticEncoding', mode='diag')),
     ValueError, r"mode='diag' is not supported; choose one of \['full', "
     r"'isotropic'\]"),
    (dict(pos_encoding=dict(type='RoPE', mode='2d')), ValueError,
     r"mode='2d' is not supported; choose one of \['axial', 'mixed'\]"),
])
def test_bad_config(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        _layer(**kwargs)


def test_bad_input_shape():
    layer = _layer()
    with pytest.raises(ValueError, match=r'x.shape=\(1, 8, 8, 12\): expected '
                       r'\[B, \*spatial, C\] with 2 spatial axes and C=16'):
        layer(torch.randn(1, 8, 8, 12))


def test_attn_drop_uses_gather_in_training():
    layer = _layer(attn_drop=0.5)
    x = torch.randn(1, 8, 8, 16)
    layer.train()
    torch.manual_seed(1)
    a = layer(x)
    torch.manual_seed(2)
    b = layer(x)
    assert not torch.allclose(a, b)
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))
    layer.backend = 'fused_cpu'
    layer.train()
    with pytest.raises(NotImplementedError, match='attention dropout: '
                       'fused_cpu has none'):
        layer(x)
