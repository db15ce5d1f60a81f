"""conv_to_attention: exactness sweep, soft inits, gradients, errors."""
import pytest
import torch
import torch.nn as nn

from convattn_mm.convert import (HARD_NEG, UnsupportedConvError,
                                 check_convertible, conv_to_attention,
                                 soft_init_bound)
from convattn_mm.models.layers import (ConvAttention, GatedConvAttention,
                                       RelPosAttention)
from convattn_mm.registry import build_module


def _conv(rank=2, cin=6, cout=10, k=3, s=1, d=1, g=1, bias=True,
          padding=None, dtype=torch.float32):
    cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[rank]
    k = (k, ) * rank if isinstance(k, int) else tuple(k)
    d = (d, ) * rank if isinstance(d, int) else tuple(d)
    if padding is None:
        padding = tuple(di * (ki - 1) // 2 for ki, di in zip(k, d))
    conv = cls(cin, cout, k, s, padding, d, g, bias=bias).to(dtype)
    if bias:  # make the bias visible next to the weights
        with torch.no_grad():
            conv.bias.normal_()
    return conv


# (rank, cin, cout, kernel, stride, dilation, groups, bias, spatial)
CASES = [
    (2, 6, 10, 1, 1, 1, 1, True, (7, 9)),
    (2, 6, 10, 3, 1, 1, 1, True, (7, 9)),
    (2, 6, 6, 5, 1, 1, 1, False, (7, 9)),
    (2, 3, 8, 7, 2, 1, 1, True, (11, 10)),
    (2, 6, 10, (3, 5), 1, 1, 1, True, (7, 9)),
    (2, 6, 10, (1, 3), 1, 1, 1, True, (7, 9)),
    (2, 6, 10, (5, 1), (2, 1), 1, 1, True, (7, 9)),
    (2, 6, 10, 3, 1, 2, 1, True, (9, 9)),
    (2, 6, 10, 3, 1, (2, 3), 1, True, (9, 11)),
    (2, 6, 10, 3, 2, 1, 1, True, (9, 8)),
    (2, 6, 10, 3, 3, 2, 1, True, (10, 11)),
    (2, 6, 10, 3, 1, 1, 2, True, (7, 9)),
    (2, 8, 4, 3, 2, 1, 4, False, (7, 9)),
    (2, 8, 8, 3, 1, 1, 8, True, (7, 9)),  # depthwise
    (2, 8, 16, 5, 1, 1, 8, True, (7, 9)),  # depthwise, multiplier 2
    (2, 6, 10, 5, 1, 1, 1, True, (2, 3)),  # map smaller than the kernel
    (2, 6, 10, 3, 2, 2, 1, True, (3, 2)),
    (2, 6, 10, 3, 1, 1, 1, True, (1, 1)),
    (1, 6, 10, 5, 2, 1, 1, True, (13, )),
    (3, 4, 5, 3, 1, (1, 2, 1), 1, True, (5, 6, 4)),
]


def _check(case, dtype, backend='auto'):
    rank, cin, cout, k, s, d, g, bias, spatial = case
    conv = _conv(rank, cin, cout, k, s, d, g, bias, dtype=dtype)
    layer = conv_to_attention(conv, backend=backend)
    x = torch.randn(2, cin, *spatial, dtype=dtype)
    with torch.no_grad():
        ref, got = conv(x), layer(x)
    assert got.shape == ref.shape and got.dtype == dtype
    return (got - ref).abs().max().item(), ref.abs().max().item()


@pytest.mark.parametrize('case', CASES, ids=[str(c[:9]) for c in CASES])
def test_exact_float32(case):
    err, scale = _check(case, torch.float32)
    assert err <= 1e-5 * scale


@pytest.mark.parametrize('case', CASES, ids=[str(c[:9]) for c in CASES])
def test_exact_float64(case):
    err, scale = _check(case, torch.float64)
    assert err <= 1e-13 * max(scale, 1.0)


@pytest.mark.parametrize('case', CASES[1:4] + CASES[12:14])
def test_exact_gather_backend(case):
    err, scale = _check(case, torch.float64, backend='gather')
    assert err <= 1e-13 * max(scale, 1.0)


def test_structure_of_exact_layer():
    conv = _conv(cin=4, cout=6, k=(3, 5), d=2, g=2)
    layer = conv_to_attention(conv)
    assert isinstance(layer, ConvAttention)
    assert isinstance(layer, RelPosAttention)
    assert layer.num_heads == 15 and layer.qk is None
    assert layer.border == 'zeros' and layer.small_map == 'pad'
    assert layer.dilation == (2, 2) and layer.query_stride == (1, 1)
    table = layer.pos_encoding.table.view(15, 15)
    assert torch.equal(table.diagonal(), torch.zeros(15))
    off = table[~torch.eye(15, dtype=torch.bool)]
    assert torch.all(off == HARD_NEG)
    # block-diagonal W_o: output group 0 never reads input group 1
    w = layer.proj.weight.view(6, 15, 4)
    assert torch.all(w[:3, :, 2:] == 0) and torch.all(w[3:, :, :2] == 0)
    assert torch.equal(layer.proj.bias, conv.bias)


def test_padding_same_string_and_eval_mode():
    conv = nn.Conv2d(3, 5, 3, padding='same', dilation=2).eval()
    layer = conv_to_attention(conv)
    assert not layer.training
    x = torch.randn(1, 3, 8, 8)
    assert torch.allclose(layer(x), conv(x), atol=1e-5)


def test_exact_layer_trains_and_stays_finite():
    conv = _conv(cin=4, cout=4)
    layer = conv_to_attention(conv)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, weight_decay=1e-2,
                          momentum=0.9)
    x = torch.randn(2, 4, 6, 6)
    target = torch.randn(2, 4, 6, 6)
    for _ in range(3):
        loss = (layer(x) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        assert layer.proj.weight.grad.abs().sum() > 0
        opt.step()
    assert all(torch.isfinite(p).all() for p in layer.parameters())


def test_channels_last_layout_and_config_build():
    layer = build_module(
        dict(type='ConvAttention', embed_dims=4, num_heads=9, out_dims=6,
             kernel_size=3, layout='channels_last'))
    y = layer(torch.randn(2, 5, 7, 4))
    assert y.shape == (2, 5, 7, 6)
    assert layer.forward_nchw(torch.randn(2, 4, 5, 7)).shape == (2, 6, 5, 7)


@pytest.mark.parametrize('init', ['quadratic', 'gated'])
def test_soft_init_close_and_every_parameter_learns(init):
    conv = _conv(cin=8, cout=12, k=3, d=1)
    layer = conv_to_attention(conv, init=init, init_mass=0.99,
                              gate_init=0.95)
    assert isinstance(layer, GatedConvAttention) == (init == 'gated')
    assert layer.qk is not None and layer.qk_dims == 8
    x = torch.randn(2, 8, 7, 7)
    ref, got = conv(x), layer(x)
    err = (got - ref).abs().max().item()
    # documented bound (convattn_mm/convert/conv.py)
    if init == 'gated':
        bound = soft_init_bound(layer, x.abs().max(), 0.95 * 0.99)
    else:
        # bound without content, plus slack for the small content scores
        bound = soft_init_bound(layer, x.abs().max(), 0.99)
    assert err <= bound
    assert err > 0  # soft: not the hard one-hot
    got.square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_soft_quadratic_without_content_meets_mass_bound():
    conv = _conv(cin=5, cout=7, k=5, d=2)
    layer = conv_to_attention(conv, init='quadratic', init_mass=0.999)
    with torch.no_grad():
        layer.qk.weight.zero_()
    x = torch.randn(1, 5, 12, 12)
    err = (layer(x) - conv(x)).abs().max().item()
    assert err <= soft_init_bound(layer, x.abs().max(), 0.999)
    # the bound is tight enough to mean something: far below the output
    assert soft_init_bound(layer, x.abs().max(), 0.999) < conv(x).abs().max()


# ----------------------------------------------------------------- errors
@pytest.mark.parametrize('conv,match', [
    (nn.ConvTranspose2d(3, 4, 3, padding=1), r'transposed=True'),
    (nn.Conv2d(3, 4, 3, padding=1, padding_mode='circular'),
     r"padding_mode='circular'"),
    (nn.Conv2d(3, 4, 3, padding=1, padding_mode='reflect'),
     r"padding_mode='reflect'"),
    (nn.Conv2d(3, 4, 2), r'kernel_size=\(2, 2\): even'),
    (nn.Conv2d(3, 4, 3), r"padding=\(0, 0\) .*'same' padding"),
    (nn.Conv2d(3, 4, 3, padding=2), r'padding=\(2, 2\)'),
    (nn.Conv2d(3, 4, 3, padding=1, dilation=2),
     r'dilation=\(2, 2\).*\(2, 2\)'),
    (nn.Conv2d(3, 4, 3, padding='valid'), r"padding='valid'"),
])
def test_unsupported_settings_are_named(conv, match):
    with pytest.raises(UnsupportedConvError, match=match):
        conv_to_attention(conv)
    assert issubclass(UnsupportedConvError, ValueError)


def test_argument_errors():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    with pytest.raises(ValueError, match=r"init='hard' is not supported; "
                       r"choose one of \['exact', 'gated', 'quadratic'\]"):
        conv_to_attention(conv, init='hard')
    with pytest.raises(ValueError, match=r'init_mass=1.5 must lie in'):
        conv_to_attention(conv, init='quadratic', init_mass=1.5)
    with pytest.raises(TypeError, match=r'conv=Linear: expected an '
                       r'nn.Conv1d/Conv2d/Conv3d'):
        check_convertible(nn.Linear(3, 4))
    with pytest.raises(ValueError, match=r'gate_init=1.0 must lie in'):
        conv_to_attention(conv, init='gated', gate_init=1.0)
    with pytest.raises(ValueError, match=r'qk_dims=-1: expected an int'):
        ConvAttention(4, 9, qk_dims=-1)
    with pytest.raises(ValueError, match=r"layout='nhwc' is not supported"):
        ConvAttention(4, 9, layout='nhwc')
    with pytest.raises(ValueError, match=r'qk_dims=0: the gated layer'):
        GatedConvAttention(4, 9, qk_dims=0)
    with pytest.raises(ValueError, match=r'pos_encoding=None: the gated'):
        GatedConvAttention(4, 9, qk_dims=2, pos_encoding=None)
    layer = conv_to_attention(conv)
    with pytest.raises(ValueError, match=r'x.shape=\(2, 3, 5\): expected '
                       r'\[B, C, \*spatial\]'):
        layer(torch.randn(2, 3, 5))


def test_exact_layer_conv_weight_is_the_convs():
    conv = _conv(cin=4, cout=6, k=(3, 5), d=2)
    layer = conv_to_attention(conv)
    # one-hot weights: W_δ = W_o^{h(δ)} exactly, so outputs are the conv's
    assert torch.equal(layer.conv_weight(), conv.weight)
    x = torch.randn(2, 4, 9, 11)
    with torch.no_grad():
        assert torch.equal(layer(x), conv(x))


@pytest.mark.parametrize('case', [CASES[3], CASES[8], CASES[12], CASES[15],
                                  CASES[18], CASES[19]],
                         ids=lambda c: str(c[:9]))
@pytest.mark.parametrize('layout', ['channels_first', 'channels_last'])
def test_position_only_fast_path_equals_attention_op(case, layout):
    """backend='auto' runs a position-only layer as its conv; a forced
    backend runs the attention op. A soft table (not one-hot) makes every
    head's weights dense: outputs and gradients of both agree."""
    rank, cin, cout, k, s, d, g, bias, spatial = case
    conv = _conv(rank, cin, cout, k, s, d, g, bias, dtype=torch.float64)
    fast = conv_to_attention(conv)
    with torch.no_grad():
        fast.pos_encoding.table.normal_()
    fast.layout = layout
    slow = conv_to_attention(conv, backend='fused_cpu')
    slow.load_state_dict(fast.state_dict())
    slow.layout = layout
    assert fast._runs_as_conv(spatial) and not slow._runs_as_conv(spatial)
    x = torch.randn(2, cin, *spatial, dtype=torch.float64)
    if layout == 'channels_last':
        x = x.movedim(1, -1)
    ys = [m(x) for m in (fast, slow)]
    torch.testing.assert_close(ys[0], ys[1], rtol=1e-12, atol=1e-12)
    g0 = torch.randn_like(ys[0])
    grads = [torch.autograd.grad(y, list(m.parameters()), g0)
             for y, m in zip(ys, (fast, slow))]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_fast_path_not_taken_when_recording_or_content():
    conv = _conv(cin=4, cout=4)
    layer = conv_to_attention(conv)
    with layer.recording() as rec:
        layer(torch.randn(1, 4, 6, 6))
    assert len(rec.records) == 1
    soft = conv_to_attention(conv, init='quadratic')
    assert not soft._runs_as_conv((6, 6))


def test_exact_fast_path_is_bit_identical_in_both_layouts():
    conv = _conv(cin=16, cout=24, k=3)
    layer = conv_to_attention(conv)
    assert layer.conv_weight().is_contiguous()
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(2, 16, 15, 13).contiguous(memory_format=fmt)
        with torch.no_grad():
            assert torch.equal(layer(x), conv(x))
