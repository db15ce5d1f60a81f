"""Contracts of the layers in :mod:`convattn_mm.models.layers` that the
numerical tests do not reach: arguments passed through, documented
defaults, error messages, which path a call takes, causal windows,
recording, conv checkpoints, the gated and cross-attention layers."""
import math
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from convattn_mm.models.layers import (AttentionRecorder, ConvAttention,
                                       CrossAttention, GatedConvAttention,
                                       Mlp, RelPosAttention, RelPosAttnBlock)
from convattn_mm.models.layers import rel_pos_attention as rpa
from convattn_mm.models.layers.conv_attention import HARD_NEG, proj_weight
from convattn_mm.ops import fused_cpu

INIT = dict(type='Constant', layer='Linear', val=0.5)


def _full(text):
    """``match=`` for exactly ``text``."""
    return '^' + re.escape(text) + '$'


# ------------------------------------------------------------ RelPosAttention
def test_rel_pos_defaults_and_repr():
    """Documented defaults (7x7 window, shift border, shrink) and every
    argument in ``extra_repr``."""
    layer = RelPosAttention(16, 2, init_cfg=INIT)
    assert layer.kernel_size == (7, 7) and layer.init_cfg == INIT
    assert layer.border == 'shift' and layer.small_map == 'shrink'
    assert layer.extra_repr() == (
        "embed_dims=16, num_heads=2, head_dims=8, out_dims=16, "
        "kernel_size=(7, 7), dilation=(1, 1), query_stride=(1, 1), "
        "border='shift', backend='auto', small_map='shrink'")
    causal = RelPosAttention(8, 2, head_dims=3, out_dims=4, kernel_size=3,
                             dilation=2, query_stride=3, border='mask',
                             backend='reference', small_map='pad', rank=1,
                             causal=True)
    assert causal.extra_repr() == (
        "embed_dims=8, num_heads=2, head_dims=3, out_dims=4, "
        "kernel_size=(5,), dilation=(2,), query_stride=(3,), "
        "border='mask', backend='reference', small_map='pad', causal=True")


@pytest.mark.parametrize('kwargs,exc,msg', [
    (dict(causal=True, border='mask'), NotImplementedError,
     'causal=True with rank=2: causal windows exist on one (time) axis '
     'only; use rank=1'),
    (dict(causal=True, rank=1), ValueError,
     "causal=True needs border='mask' or 'zeros' (a 'shift' window moves "
     "into the future at the start of the sequence), got border='shift'"),
    (dict(causal=True, rank=1, border='mask', kernel_size='x'), TypeError,
     "kernel_size='x': each entry must be a positive int or 'global'"),
    (dict(dilation=(1, 2, 3)), ValueError,
     'dilation=(1, 2, 3) has 3 entries, expected 2 (one per spatial axis) '
     'or a positive int'),
    (dict(query_stride=0), ValueError,
     'query_stride=0: each entry must be a positive int'),
    (dict(pos_encoding=dict(type='RelativeBiasTable', radius=(1, 2, 3))),
     ValueError, 'pos_encoding.radius=(1, 2, 3) has 3 entries, expected 2 '
     '(one per spatial axis) or a positive int'),
])
def test_rel_pos_config_errors(kwargs, exc, msg):
    """Each bad argument is named, with its value, in the message."""
    with pytest.raises(exc, match=_full(msg)):
        RelPosAttention(16, 2, **kwargs)


def test_causal_kernel_covers_past_frames():
    """A causal ``K``-frame window runs as the centred ``2K-1`` window (even
    ``K`` too); a global causal window stays global."""
    for k, want in ((3, (5, )), (4, (7, )), ('global', ('global', ))):
        layer = RelPosAttention(8, 2, kernel_size=k, rank=1, border='zeros',
                                causal=True)
        assert layer.kernel_size == want


def test_table_geometry_radius_and_step():
    """The layer fills the encoding's radius (a per-axis override wins) and
    step (the dilation; 1 on a global axis, whose radius is 15)."""
    layer = RelPosAttention(16, 2, kernel_size=(5, 'global'), dilation=2,
                            pos_encoding=dict(type='RelativeBiasTable',
                                              radius=(1, 3)))
    enc = layer.pos_encoding
    assert enc.radius == (1, 3) and enc.step == (2, 1)
    assert enc.table.shape == (2, 3, 7)
    assert layer._table_geometry() == ((4, rpa.GLOBAL_TABLE_RADIUS), (2, 1))
    assert layer._table_geometry(2) == ((2, 2), (2, 1))


def test_encoding_that_takes_scale_gets_it():
    """An encoding class with ``takes_scale`` (by registry name or as the
    class) is built with the layer's softmax scale; others are not."""
    from convattn_mm.models.encodings import RelativeBiasTable, RelativeKeys
    from convattn_mm.registry import MODELS

    class NeedsScale(RelativeKeys):

        def __init__(self, *args, scale, **kwargs):
            super().__init__(*args, scale=scale, **kwargs)
            self.given_scale = scale

    name = '_TestNeedsScale'
    MODELS.register_module(name=name, module=NeedsScale, force=True)
    try:
        for kind in (NeedsScale, name):
            layer = RelPosAttention(16, 2, head_dims=16,
                                    pos_encoding=dict(type=kind))
            assert layer.pos_encoding.given_scale == 0.25
    finally:
        MODELS._module_dict.pop(name)
    layer = RelPosAttention(16, 2, pos_encoding=dict(type=RelativeBiasTable))
    assert type(layer.pos_encoding) is RelativeBiasTable


def test_plan_sees_every_trainable_tensor():
    """A call is a training call (which CPU flex refuses) when any tensor
    it reads requires grad: an encoding's table with the projections frozen,
    or the input that is the value of a content-free ConvAttention."""
    layer = RelPosAttention(16, 2, kernel_size=3, backend='flex',
                            pos_encoding=dict(type='RelativeBiasTable'))
    layer.qkv.requires_grad_(False)
    with pytest.raises(NotImplementedError, match='backward on the CPU'):
        layer(torch.randn(1, 5, 5, 16))
    conv = ConvAttention(4, 9, pos_encoding=None, border='mask',
                         small_map='shrink', backend='flex')
    conv.requires_grad_(False)
    with pytest.raises(NotImplementedError, match='backward on the CPU'):
        conv(torch.randn(1, 4, 5, 5, requires_grad=True))


@pytest.mark.parametrize('as_class', [False, True])
def test_relative_keys_get_the_layer_scale(as_class):
    """An encoding that takes the scale gets ``head_dims ** -0.5`` whether
    its type is a registry name or the class itself."""
    from convattn_mm.models.encodings import RelativeKeys
    kind = RelativeKeys if as_class else 'RelativeKeys'
    layer = RelPosAttention(12, 2, head_dims=4,
                            pos_encoding=dict(type=kind))
    assert isinstance(layer.pos_encoding, RelativeKeys)
    assert layer.pos_encoding.scale == 0.5


def test_shrunk_axis_is_undilated_global():
    """``small_map='shrink'`` turns a too-small axis into a global window of
    dilation 1; the other axis keeps its window."""
    layer = RelPosAttention(16, 2, kernel_size=5, dilation=2)
    spec, padded = layer.window((3, 20))
    assert padded == (3, 20)
    assert (spec.axes[0].kernel, spec.axes[0].dilation) == (3, 1)
    assert (spec.axes[1].kernel, spec.axes[1].dilation) == (5, 2)
    # a 'shift' window needs K*d positions: 9 < 5*2 shrinks
    assert layer.window((9, 10))[0].axes[0].kernel == 9
    assert layer.window((9, 10))[0].axes[1].kernel == 5


def test_pad_leaves_a_fitting_axis_alone():
    """``small_map='pad'`` pads only the axes the window does not fit, by
    the border's extent."""
    layer = RelPosAttention(16, 2, kernel_size=5, border='zeros',
                            small_map='pad')
    assert layer.window((3, 5))[1] == (5, 5)
    assert layer.window((7, 9))[1] == (7, 9)
    glob = RelPosAttention(16, 2, kernel_size=('global', 3), border='zeros',
                           small_map='pad')
    assert glob.window((0, 5))[1] == (0, 5)  # a global axis never pads


ENCODINGS = [None, dict(type='RelativeBiasTable'), dict(type='RelativeKeys'),
             dict(type='QuadraticEncoding'), dict(type='RoPE')]


@pytest.mark.parametrize('enc', ENCODINGS,
                         ids=['none', 'bias', 'relkeys', 'quad', 'rope'])
def test_unstrided_auto_matches_reference(enc):
    """The q/k/v-fused CPU path (no stride) equals the reference backend,
    bias and relative keys included."""
    _check_against_reference(12, enc, (2, 5, 6, 12))


def _check_against_reference(embed_dims, enc, shape):
    """A 3×3 zero-padded float64 layer with random encoding parameters gives
    the same output on its default backend as on the reference one."""
    torch.manual_seed(0)
    layer = RelPosAttention(embed_dims, 2, kernel_size=3, border='zeros',
                            pos_encoding=enc).double()
    if enc is not None:
        with torch.no_grad():
            for p in layer.pos_encoding.parameters():
                p.normal_()
    x = torch.randn(*shape, dtype=torch.float64)
    y = layer(x)
    layer.backend = 'reference'
    torch.testing.assert_close(y, layer(x))


def _count_fused(monkeypatch):
    calls = []
    real = fused_cpu.fused_cpu_attention_qkv

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(rpa.fused_cpu, 'fused_cpu_attention_qkv', spy)
    return calls


def test_fused_qkv_entry_conditions(monkeypatch):
    """The C++ q/k/v-fused entry runs a float32/64 CPU call in eval (even
    with ``attn_drop``), not a training call with attention dropout nor a
    bfloat16 one."""
    if fused_cpu.unavailable_reason():
        pytest.skip(fused_cpu.unavailable_reason())
    calls = _count_fused(monkeypatch)
    layer = RelPosAttention(16, 2, kernel_size=3, attn_drop=0.5,
                            pos_encoding=dict(type='RelativeBiasTable'))
    layer.eval()
    x = torch.randn(1, 5, 5, 16)
    y = layer(x)
    assert len(calls) == 1
    torch.testing.assert_close(y, layer(x))
    layer.train()
    layer(x)
    assert len(calls) == 2
    layer.eval()
    layer.bfloat16()(x.bfloat16())
    assert len(calls) == 2


def test_encoding_tables_follow_the_input_dtype():
    """Position tables are cast to the input's dtype (an encoding kept in
    float32 inside a float64 layer), on both attention paths."""
    torch.manual_seed(0)
    layer = RelPosAttention(8, 2, kernel_size=3, border='zeros',
                            pos_encoding=dict(type='RelativeKeys')).double()
    layer.pos_encoding.float()
    x = torch.randn(1, 4, 5, 8, dtype=torch.float64)
    y = layer(x)
    assert y.dtype == torch.float64
    layer.query_stride = (1, 1)
    layer.backend = 'gather'
    torch.testing.assert_close(layer(x), y)


def test_float64_tables_in_a_float32_layer():
    """An encoding kept in float64 inside a float32 layer: the tables are
    cast to the input's dtype and the output stays float32."""
    layer = RelPosAttention(8, 2, kernel_size=3, border='zeros',
                            backend='gather',
                            pos_encoding=dict(type='RelativeBiasTable'))
    layer.pos_encoding.double()
    assert layer(torch.randn(1, 4, 5, 8)).dtype == torch.float32


def test_fused_path_carries_relative_keys():
    """An encoding with relative keys and no q/k transform (relative keys
    without ``u``) runs the fused path, keys included: it equals the
    reference backend."""
    if fused_cpu.unavailable_reason():
        pytest.skip(fused_cpu.unavailable_reason())
    from convattn_mm.models.encodings import RelativeKeys
    from convattn_mm.models.encodings.base import RelPosEncoding

    class PlainKeys(RelativeKeys):
        transform_qk = RelPosEncoding.transform_qk

        def __init__(self, *args, **kwargs):
            super().__init__(*args, use_u=False, **kwargs)

    _check_against_reference(8, dict(type=PlainKeys), (1, 4, 5, 8))


def test_eval_ignores_attn_drop_on_every_path():
    """``attn_drop`` acts in training only: in eval a gather-path call is
    the layer without dropout."""
    torch.manual_seed(0)
    layer = RelPosAttention(16, 2, kernel_size=3, attn_drop=0.9,
                            backend='gather').eval()
    x = torch.randn(1, 5, 5, 16)
    y = layer(x)
    layer.attn_drop = 0.0
    torch.testing.assert_close(y, layer(x))


def test_plan_defaults_to_no_dropout():
    """``plan`` without ``dropout_p`` plans a call without dropout (the
    fused CPU kernel, which has none)."""
    if fused_cpu.unavailable_reason():
        pytest.skip(fused_cpu.unavailable_reason())
    layer = RelPosAttention(16, 2, kernel_size=3)
    spec, _ = layer.window((5, 5))
    q = torch.randn(1, 2, 25, 8)
    assert layer.plan(q, spec).backend == 'fused_cpu'
    assert layer.plan(q, spec, 0.5).backend == 'gather'


def test_causal_plan_carries_the_mask_as_a_bias():
    """A causal layer's future mask is a bias, never extra head dims, also
    for an encoding that would travel as extra dims."""
    layer = RelPosAttention(8, 2, kernel_size=3, rank=1, border='mask',
                            causal=True,
                            pos_encoding=dict(type='QuadraticEncoding'))
    spec, _ = layer.window((9, ))
    q = torch.randn(1, 2, 9, 4)
    for backend in ('auto', 'gather', 'reference'):
        layer.backend = backend
        assert layer.plan(q, spec).bias_as == 'bias'
    plain = RelPosAttention(8, 2, kernel_size=3, rank=1, border='mask',
                            causal=True)
    assert plain.plan(q, spec).bias_as == 'bias'


def _causal_oracle(layer, x, K, bias=None):
    """Dense attention of frame ``t`` over frames ``t-K+1 .. t`` (in the
    map), ``bias [H, 2K-1]`` over offsets ``-(K-1) .. K-1``."""
    L = x.shape[1]
    t = torch.arange(L)
    delta = t[None, :] - t[:, None]  # key - query
    allowed = (delta <= 0) & (delta > -K)
    full = None
    if bias is not None:
        full = bias[:, (delta + K - 1).clamp(0, 2 * K - 2)]
    return torch.stack([
        _dense(xb, layer, allowed, full) for xb in x])


def _dense(x, layer, allowed, bias):
    H, D = layer.num_heads, layer.head_dims
    q, k, v = layer.qkv(x).split(H * D, -1)
    outs = []
    for h in range(H):
        c = slice(h * D, (h + 1) * D)
        s = q[:, c] @ k[:, c].t() * layer.scale
        if bias is not None:
            s = s + bias[h]
        s = s.masked_fill(~allowed, float('-inf'))
        outs.append(s.softmax(-1) @ v[:, c])
    return layer.proj(torch.cat(outs, -1))


@pytest.mark.parametrize('backend', ['auto', 'gather', 'reference'])
@pytest.mark.parametrize('with_bias', [False, True])
def test_causal_layer_is_masked_dense_attention(backend, with_bias):
    """``causal=True``: frame ``t`` attends to exactly ``t-K+1 .. t`` (the
    present included, the future and older frames not), with the table's
    bias on those offsets."""
    torch.manual_seed(0)
    K = 3
    enc = dict(type='RelativeBiasTable') if with_bias else None
    layer = RelPosAttention(8, 2, kernel_size=K, rank=1, border='mask',
                            causal=True, pos_encoding=enc,
                            backend=backend).double()
    bias = None
    if with_bias:
        with torch.no_grad():
            layer.pos_encoding.table.normal_()
        bias = layer.pos_encoding.table.reshape(2, -1)
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    torch.testing.assert_close(layer(x), _causal_oracle(layer, x, K, bias))


def test_causal_pad_on_a_short_sequence():
    """A causal ``small_map='pad'`` layer on a sequence shorter than the
    window is the same masked dense attention; ``key_lengths`` with
    padding is refused with a pointer to ``'shrink'``."""
    torch.manual_seed(0)
    layer = RelPosAttention(8, 2, kernel_size=4, rank=1, border='mask',
                            causal=True, small_map='pad').double()
    x = torch.randn(1, 3, 8, dtype=torch.float64)
    torch.testing.assert_close(layer(x), _causal_oracle(layer, x, 4))
    with pytest.raises(NotImplementedError, match=_full(
            "key_lengths with small_map='pad' on a map of (3,): use "
            "small_map='shrink'")):
        layer(x, key_lengths=torch.tensor([2]))


@pytest.mark.parametrize('enc', [dict(type='RelativeKeys'),
                                 dict(type='RelativeBiasTable')])
def test_key_lengths_equal_a_truncated_sequence(enc):
    """With ``key_lengths`` a sample's valid outputs equal the layer on the
    sequence cut at its length (relative keys and bias included)."""
    torch.manual_seed(0)
    layer = RelPosAttention(8, 2, kernel_size='global', rank=1,
                            border='mask', pos_encoding=enc).double()
    with torch.no_grad():
        for p in layer.pos_encoding.parameters():
            p.normal_()
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    y = layer(x, key_lengths=torch.tensor([7, 4]))
    torch.testing.assert_close(y[1, :4], layer(x[1:, :4])[0])
    torch.testing.assert_close(y[0], layer(x[:1])[0])


def test_key_lengths_path_applies_attn_drop_in_training():
    """``attn_drop`` also acts on the key-padding path (training only)."""
    layer = RelPosAttention(8, 2, kernel_size='global', rank=1,
                            border='mask', attn_drop=0.5)
    x = torch.randn(1, 6, 8)
    lengths = torch.tensor([5])
    torch.manual_seed(1)
    a = layer(x, key_lengths=lengths)
    torch.manual_seed(2)
    b = layer(x, key_lengths=lengths)
    assert not torch.allclose(a, b)


# ------------------------------------------------------------------ recording
def _replay(rec, v, proj):
    """The output a record's weights give: ``v [B, H, N, D]``."""
    keys = rec['keys'].long()
    vv = v[:, :, keys.clamp(min=0)] * (keys >= 0)[..., None]
    if vv.dim() == 6:  # keys per batch: [B, H, B, S, Kw, D] -> diagonal
        vv = vv.diagonal(dim1=0, dim2=2).movedim(-1, 0)
    o = torch.einsum('bhqk,bhqkd->bqhd', rec['weights'], vv)
    return proj(o.flatten(-2))


def test_recorded_weights_include_the_bias():
    """Recorded weights carry the bias table's term: they reproduce the
    output; each record names its queries and map shapes."""
    torch.manual_seed(0)
    layer = RelPosAttention(8, 2, kernel_size=3, border='zeros',
                            pos_encoding=dict(type='RelativeBiasTable'))
    with torch.no_grad():
        layer.pos_encoding.table.normal_(std=3)
    x = torch.randn(1, 4, 5, 8)
    with layer.recording() as rec:
        y = layer(x)
    r = rec.records[0]
    assert r['queries'] is None
    assert r['out_shape'] == (4, 5) and r['in_shape'] == (4, 5)
    v = layer.qkv(x).reshape(1, 20, 3, 2, 4)[:, :, 2].transpose(1, 2)
    torch.testing.assert_close(_replay(r, v, layer.proj).reshape(y.shape), y)


def test_recorded_queries_select_rows():
    """A recording of chosen queries holds the rows of those queries (row
    major flat index) of the full recording; a query on the grid's edge
    ``(out_shape[0], 0)`` is outside."""
    torch.manual_seed(0)
    layer = RelPosAttention(8, 2, kernel_size=3,
                            pos_encoding=dict(type='RelativeBiasTable'))
    x = torch.randn(1, 4, 5, 8)
    with layer.recording() as full:
        layer(x)
    with layer.recording([(1, 2), [3, 4]]) as some:
        layer(x)
    r = some.records[0]
    assert r['queries'] == [(1, 2), (3, 4)]
    w = full.records[0]['weights']
    torch.testing.assert_close(r['weights'], w[:, :, [7, 19]])
    with pytest.raises(ValueError, match=_full(
            'query (4, 0) is outside the output grid (4, 5)')):
        with layer.recording([(4, 0)]):
            layer(x)


def test_recorder_subclass_chooses_queries_per_window():
    """``queries_for`` gets the window: a subclass can pick the last query
    of whatever grid it sees."""
    class Last(AttentionRecorder):
        def queries_for(self, spec):
            return [tuple(n - 1 for n in spec.out_shape)]

    layer = RelPosAttention(8, 2, kernel_size=3, query_stride=2)
    with layer.recording(recorder=Last()) as rec:
        layer(torch.randn(1, 5, 7, 8))
    assert rec.records[0]['queries'] == [(2, 3)]
    assert rec.records[0]['weights'].shape[2] == 1


@pytest.mark.parametrize('enc', ['RelativeBiasTable', 'RelativeKeys'])
def test_recording_with_key_lengths(enc):
    """Recording works on the key-padding path and sees the position terms:
    the weights reproduce the output."""
    torch.manual_seed(0)
    layer = RelPosAttention(8, 2, kernel_size='global', rank=1,
                            border='mask', pos_encoding=dict(type=enc))
    with torch.no_grad():
        for p in layer.pos_encoding.parameters():
            p.normal_(std=3)
    x = torch.randn(1, 6, 8)
    with layer.recording() as rec:
        y = layer(x, key_lengths=torch.tensor([6]))
    r = rec.records[0]
    v = layer.qkv(x).reshape(1, 6, 3, 2, 4)[:, :, 2].transpose(1, 2)
    torch.testing.assert_close(_replay(r, v, layer.proj), y)


# -------------------------------------------------------------- ConvAttention
def test_conv_attention_defaults_and_pass_through():
    """Defaults (no content, 3x3, zeros border, pad) and the arguments the
    base class keeps."""
    layer = ConvAttention(16, 9)
    assert layer.qk is None and layer.qk_dims == 0
    assert layer.head_dims == 1 and layer.scale == 1.0
    assert layer.proj_drop.p == 0.0 and layer.attn_drop == 0.0
    assert layer.kernel_size == (3, 3) and layer.small_map == 'pad'
    other = ConvAttention(16, 9, qk_dims=4, qkv_bias=False, attn_drop=0.1,
                          proj_drop=0.2, backend='gather', init_cfg=INIT,
                          layout='channels_last')
    assert other.qk.bias is None and other.qk.out_features == 72
    assert other.attn_drop == 0.1 and other.proj_drop.p == 0.2
    assert other.backend == 'gather' and other.init_cfg == INIT
    assert other.head_dims == 4
    assert other.extra_repr().endswith(
        "small_map='pad', qk_dims=4, layout='channels_last'")


@pytest.mark.parametrize('kwargs,msg', [
    (dict(qk_dims=-1), 'qk_dims=-1: expected an int >= 0 (0 = no content '
     'term)'),
    (dict(qk_dims=True), 'qk_dims=True: expected an int >= 0 (0 = no '
     'content term)'),
    (dict(layout='nhwc'), "layout='nhwc' is not supported; choose one of "
     "['channels_first', 'channels_last']"),
])
def test_conv_attention_config_errors(kwargs, msg):
    """Bad ``qk_dims`` / ``layout`` are refused with the whole message."""
    with pytest.raises(ValueError, match=_full(msg)):
        ConvAttention(16, 9, **kwargs)


def _runs_as_conv(monkeypatch, layer, x):
    calls = []
    real = layer._conv_forward

    def spy(t):
        calls.append(t.shape)
        return real(t)

    monkeypatch.setattr(layer, '_conv_forward', spy)
    y = layer(x)
    return bool(calls), y


@pytest.mark.parametrize('kwargs,conv', [
    (dict(), True),
    (dict(pos_encoding=None), True),
    (dict(qk_dims=2), False),
    (dict(backend='reference'), False),
    (dict(border='mask', small_map='shrink'), False),
    (dict(pos_encoding=dict(type='RelativeKeys')), False),
    (dict(small_map='shrink'), True),
])
@pytest.mark.parametrize('layout', ['channels_first', 'channels_last'])
def test_conv_fast_path_choice(monkeypatch, kwargs, conv, layout):
    """Which calls run as the equivalent convolution (module doc), and that
    both paths give the attention op's result, in both layouts."""
    torch.manual_seed(0)
    layer = ConvAttention(6, 9, out_dims=5, layout=layout, **kwargs).double()
    if layer.pos_encoding is not None:
        with torch.no_grad():
            for p in layer.pos_encoding.parameters():
                p.normal_()
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    if layout == 'channels_last':
        x = x.permute(0, 2, 3, 1)
    ran, y = _runs_as_conv(monkeypatch, layer, x)
    assert ran == conv
    want_shape = (2, 5, 5, 7) if layout == 'channels_first' else (2, 5, 7, 5)
    assert y.shape == want_shape
    layer.backend = 'reference'
    torch.testing.assert_close(y, layer(x))


def test_conv_fast_path_off_when_recording_or_dropping(monkeypatch):
    """Recording and attention dropout in training run the op; dropout in
    eval does not."""
    layer = ConvAttention(4, 9, attn_drop=0.5)
    x = torch.randn(1, 4, 5, 5)
    layer.eval()
    assert _runs_as_conv(monkeypatch, layer, x)[0]
    layer.train()
    monkeypatch.undo()
    assert not _runs_as_conv(monkeypatch, layer, x)[0]
    layer.attn_drop = 0.0
    monkeypatch.undo()
    assert _runs_as_conv(monkeypatch, layer, x)[0]
    monkeypatch.undo()
    with layer.recording():
        assert not _runs_as_conv(monkeypatch, layer, x)[0]


@pytest.mark.parametrize('layout', ['channels_first', 'channels_last'])
def test_conv_shrink_on_a_small_map_is_attention(monkeypatch, layout):
    """``small_map='shrink'`` on a map smaller than the window (first axis)
    is not a convolution: the op runs and attends along the whole axis."""
    torch.manual_seed(0)
    layer = ConvAttention(4, 25, kernel_size=5, small_map='shrink',
                          layout=layout).double()
    with torch.no_grad():
        layer.pos_encoding.table.normal_()
    x = torch.randn(1, 4, 3, 9, dtype=torch.float64)
    if layout == 'channels_last':
        x = x.permute(0, 2, 3, 1)
    ran, y = _runs_as_conv(monkeypatch, layer, x)
    assert not ran
    layer.backend = 'reference'
    torch.testing.assert_close(y, layer(x))


def test_conv_small_map_error_rule():
    """``small_map='error'`` raises on a map smaller than the window."""
    layer = ConvAttention(4, 25, kernel_size=5, small_map='error')
    with pytest.raises(ValueError, match="small_map='error'"):
        layer(torch.randn(1, 4, 3, 9))


def test_conv_weight_is_softmax_of_the_table():
    """``conv_weight`` is ``W[o, c, δ] = Σ_h softmax(b^h)_δ W_o^h[o, c]``
    (uniform weights without an encoding), in the layer's dtype."""
    torch.manual_seed(0)
    layer = ConvAttention(3, 9, out_dims=2).double()
    with torch.no_grad():
        layer.pos_encoding.table.normal_()
    a = layer.pos_encoding.table.reshape(9, 9).softmax(-1)
    w_o = layer.proj.weight.view(2, 9, 3)
    want = torch.einsum('hd,ohc->ocd', a, w_o).reshape(2, 3, 3, 3)
    got = layer.conv_weight()
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want)
    layer.pos_encoding.float()  # a float32 table in a float64 layer
    assert layer.conv_weight().dtype == torch.float64
    plain = ConvAttention(3, 9, out_dims=2, pos_encoding=None)
    w = plain.proj.weight.view(2, 9, 3).sum(1) / 9
    torch.testing.assert_close(plain.conv_weight(),
                               w[..., None, None].expand(2, 3, 3, 3))
    x = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(
        plain(x), F.conv2d(x, plain.conv_weight(), plain.proj.bias,
                           padding=1))


@pytest.mark.parametrize('rank', [1, 3])
def test_conv_attention_other_ranks(rank):
    """Rank 1 and 3 layers, with relative keys (q/k of dim 1): the op path
    equals the reference and the conv path equals the op."""
    torch.manual_seed(0)
    layer = ConvAttention(3, 3 ** rank, kernel_size=3, rank=rank,
                          border='mask', small_map='shrink',
                          pos_encoding=dict(type='RelativeKeys')).double()
    x = torch.randn(1, 3, *(6, 5, 4)[:rank], dtype=torch.float64)
    y = layer(x)
    assert y.shape == x.shape
    layer.backend = 'reference'
    torch.testing.assert_close(y, layer(x))
    conv = ConvAttention(3, 3 ** rank, kernel_size=3, rank=rank).double()
    z = conv(x)
    conv.backend = 'gather'
    torch.testing.assert_close(z, conv(x))


def test_conv_attention_input_errors():
    """Wrong rank or channels are named with the expected layout."""
    layer = ConvAttention(4, 9)
    with pytest.raises(ValueError, match=_full(
            'x.shape=(1, 4, 5): expected [B, C, *spatial] with 2 spatial '
            'axes')):
        layer(torch.randn(1, 4, 5))
    with pytest.raises(ValueError, match=_full(
            'x.shape=(1, 3, 5, 5): expected [B, C, *spatial] with C=4')):
        layer(torch.randn(1, 3, 5, 5))


def test_proj_weight_of_a_grouped_conv():
    """``proj_weight`` lays a grouped conv's weight out block-diagonally:
    ``proj.weight[o, h·C_in + c] = W[o, c - g·C_in/g, h]`` inside the
    group, 0 outside."""
    w = torch.randn(4, 3, 1, 2)  # C_out 4, C_in 6, groups 2, 2 heads
    got = proj_weight(w, 6, 2).view(4, 2, 6)
    for o in range(4):
        g = o // 2
        for h in range(2):
            want = torch.zeros(6)
            want[3 * g:3 * g + 3] = w[o, :, 0, h]
            torch.testing.assert_close(got[o, h], want)


@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('groups', [1, 2])
def test_conv_checkpoint_loads_as_the_conv(bias, groups):
    """A conv's ``weight``/``bias`` keys load (under a prefix) into the
    exact-form layer, which then computes that convolution; no conv bias
    loads as zeros."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, groups=groups, bias=bias)
    net = nn.Sequential(ConvAttention(4, 9, out_dims=6))
    net.load_state_dict({'0.' + k: v for k, v in conv.state_dict().items()})
    layer = net[0]
    torch.testing.assert_close(layer.proj.weight,
                               proj_weight(conv.weight, 4, groups))
    if bias:
        torch.testing.assert_close(layer.proj.bias, conv.bias)
    else:
        assert (layer.proj.bias == 0).all()
    table = layer.pos_encoding.table.reshape(9, 9)
    hard = torch.full((9, 9), HARD_NEG).fill_diagonal_(0)
    torch.testing.assert_close(table, hard)
    x = torch.randn(2, 4, 5, 6)
    torch.testing.assert_close(layer(x), conv(x), rtol=1e-5, atol=1e-6)
    layer.backend = 'reference'
    torch.testing.assert_close(layer(x), conv(x), rtol=1e-5, atol=1e-6)


def test_attention_checkpoint_loads_as_it_is():
    """A checkpoint with ``proj.weight`` loads unchanged (a stray
    ``weight`` key is then unexpected)."""
    a = ConvAttention(4, 9)
    b = ConvAttention(4, 9)
    with torch.no_grad():
        a.pos_encoding.table.normal_()
    b.load_state_dict(a.state_dict())
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v)
    sd = dict(a.state_dict(), weight=torch.zeros(4, 4, 3, 3))
    with pytest.raises(RuntimeError, match='Unexpected key.*"weight"'):
        b.load_state_dict(sd)


def test_conv_checkpoint_of_a_soft_layer_keeps_its_table():
    """Only a layer of the exact form gets the one-hot table; others keep
    their own (here a table larger than the kernel's)."""
    layer = ConvAttention(4, 9, pos_encoding=dict(type='RelativeBiasTable',
                                                  radius=2))
    before = layer.pos_encoding.table.clone()
    conv = nn.Conv2d(4, 4, 3)
    missing = layer.load_state_dict(conv.state_dict(), strict=False)
    assert missing.missing_keys == ['pos_encoding.table']
    torch.testing.assert_close(layer.pos_encoding.table, before)
    torch.testing.assert_close(layer.proj.weight,
                               proj_weight(conv.weight, 4, 1))


@pytest.mark.parametrize('shape,what', [
    ((6, 4, 3), 'a conv weight of shape (6, 4, 3)'),
    ((5, 4, 3, 3), 'a conv weight of shape (5, 4, 3, 3)'),
    ((6, 4, 3, 5), 'a conv weight of shape (6, 4, 3, 5)'),
    ((6, 3, 3, 3), 'a conv weight of shape (6, 3, 3, 3)'),
])
def test_conv_checkpoint_that_does_not_fit(shape, what):
    """A conv weight of the wrong rank, ``C_out``, kernel size or group
    width is refused with the whole story."""
    layer = nn.Sequential(ConvAttention(4, 9, out_dims=6))
    msg = (f'0.weight: {what} does not fit this layer (4 -> 6 channels, 9 '
           f'heads, rank 2); expected [C_out, C_in/groups, *kernel] with '
           f'C_out=6 and prod(kernel)=9')
    with pytest.raises(ValueError, match=_full(msg)):
        layer.load_state_dict({'0.weight': torch.zeros(shape),
                               '0.bias': torch.zeros(shape[0])})


def test_hard_conv_table_dtype():
    """The one-hot table has the table's dtype."""
    layer = ConvAttention(4, 9).double()
    t = layer.hard_conv_table()
    assert t.dtype == torch.float64 and t.shape == (9, 3, 3)


def test_init_content():
    """``init_content``: truncated normal q/k weights of std 0.02 and zero
    bias; a no-op without content."""
    torch.manual_seed(0)
    layer = ConvAttention(64, 9, qk_dims=32)
    with torch.no_grad():
        layer.qk.bias.fill_(1)
    layer.init_content()
    std = layer.qk.weight.std().item()
    assert 0.015 < std < 0.025
    assert (layer.qk.bias == 0).all()
    layer.init_content(std=0.5)
    assert 0.3 < layer.qk.weight.std().item() < 0.6
    ConvAttention(4, 9).init_content()


# -------------------------------------------------------- GatedConvAttention
@pytest.mark.parametrize('kwargs,msg', [
    (dict(qk_dims=0), 'qk_dims=0: the gated layer needs a content term '
     '(qk_dims > 0)'),
    (dict(pos_encoding=None), 'pos_encoding=None: the gated layer needs a '
     'position encoding for its position branch'),
    (dict(gate_init=0), 'gate_init=0 must lie in (0, 1)'),
    (dict(gate_init=1), 'gate_init=1 must lie in (0, 1)'),
    (dict(gate_init=1.5), 'gate_init=1.5 must lie in (0, 1)'),
    (dict(gate_init='0.5'), "gate_init='0.5' must lie in (0, 1)"),
])
def test_gated_config_errors(kwargs, msg):
    """The gated layer's own checks, with the whole message."""
    args = dict(qk_dims=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=_full(msg)):
        GatedConvAttention(8, 9, **args)


def test_gated_positional_args_and_gate_init():
    """Positional arguments reach :class:`ConvAttention`; ``σ(gate)``
    starts at ``gate_init``."""
    layer = GatedConvAttention(8, 9, 6, 4, gate_init=0.8)
    assert (layer.embed_dims, layer.num_heads, layer.out_dims,
            layer.qk_dims) == (8, 9, 6, 4)
    torch.testing.assert_close(torch.sigmoid(layer.gate),
                               torch.full((9, ), 0.8))


def _gated(enc=dict(type='RelativeBiasTable'), **kw):
    torch.manual_seed(0)
    layer = GatedConvAttention(4, 9, qk_dims=3, border='mask',
                               small_map='shrink', pos_encoding=enc,
                               **kw).double()
    with torch.no_grad():
        for p in layer.pos_encoding.parameters():
            p.normal_()
        layer.gate.copy_(torch.linspace(-2, 2, 9))
    return layer


def test_gated_extremes_are_its_branches():
    """Gate logits of +50/-50 give exactly the position branch (content-free
    :class:`ConvAttention` with the table) / the content branch (no
    encoding)."""
    layer = _gated()
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    pos = ConvAttention(4, 9, border='mask', small_map='shrink').double()
    pos.pos_encoding.load_state_dict(layer.pos_encoding.state_dict())
    con = ConvAttention(4, 9, qk_dims=3, border='mask', small_map='shrink',
                        pos_encoding=None).double()
    for other in (pos, con):
        other.proj.load_state_dict(layer.proj.state_dict())
    con.qk.load_state_dict(layer.qk.state_dict())
    with torch.no_grad():
        layer.gate.fill_(50)
        torch.testing.assert_close(layer(x), pos(x))
        layer.gate.fill_(-50)
        torch.testing.assert_close(layer(x), con(x))


@pytest.mark.parametrize('gate', [50.0, -50.0])
def test_gated_branches_drop_in_training_only(gate):
    """``attn_drop`` acts on both branches in training and on neither in
    eval."""
    layer = _gated(attn_drop=0.5)
    with torch.no_grad():
        layer.gate.fill_(gate)
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    layer.train()
    torch.manual_seed(1)
    a = layer(x)
    torch.manual_seed(2)
    assert not torch.allclose(a, layer(x))
    layer.eval()
    torch.manual_seed(1)
    a = layer(x)
    torch.manual_seed(2)
    torch.testing.assert_close(a, layer(x))


def test_gated_recording_with_relative_keys():
    """With relative keys (and their ``u``/``v`` terms) the position branch
    and the recorded weights both see the keys: the recorded mixed weights
    reproduce the output (reference backend)."""
    layer = _gated(enc=dict(type='RelativeKeys'), backend='reference')
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    with layer.recording() as rec:
        y = layer(x)
    v = x.flatten(2).transpose(1, 2)[:, None].expand(1, 9, 25, 4)
    got = _replay(rec.records[0], v, layer.proj)
    torch.testing.assert_close(got.transpose(1, 2).reshape(y.shape), y)


@pytest.mark.xfail(strict=True, raises=ValueError,
                   reason='bug: the position branch passes q/k of dim 1 with '
                   'relative keys of dim qk_dims; fused_cpu refuses them')
def test_gated_relative_keys_on_the_fused_kernel():
    """The gated layer with relative keys runs on the default backend."""
    layer = _gated(enc=dict(type='RelativeKeys'))
    layer(torch.randn(1, 4, 5, 5, dtype=torch.float64))


def test_gated_recording_reproduces_output():
    """Recorded weights of the gated layer are the mixed weights ``a^h``:
    applied to the identity values and ``proj`` they give the output."""
    layer = _gated()
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    with layer.recording() as rec:
        y = layer(x)
    assert len(rec.records) == 1
    r = rec.records[0]
    assert r['out_shape'] == (5, 5)
    v = x.flatten(2).transpose(1, 2)[:, None].expand(1, 9, 25, 4)
    got = _replay(r, v, layer.proj)  # [B, N, C_out]
    torch.testing.assert_close(got.transpose(1, 2).reshape(y.shape), y)


def test_gated_mix_per_head_and_dtype():
    """``mix`` weighs head ``h`` by ``σ(gate_h)`` on ``[B, H, ...]`` tensors
    of any rank and keeps their dtype."""
    layer = _gated()
    g = torch.sigmoid(layer.gate.detach())
    pos = torch.randn(2, 9, 3, dtype=torch.float64)
    con = torch.randn(2, 9, 3, dtype=torch.float64)
    want = pos * g[:, None] + con * (1 - g[:, None])
    torch.testing.assert_close(layer.mix(pos, con), want)
    half = layer.mix(pos.half(), con.half())
    assert half.dtype == torch.float16


# ------------------------------------------------------------ CrossAttention
def _cross_oracle(layer, x, ctx, mask=None):
    B, C, H = x.shape[0], x.shape[-1], layer.num_heads
    q = layer.q(x).reshape(B, -1, H, C // H).transpose(1, 2)
    k, v = layer.kv(ctx).reshape(B, -1, 2, H, C // H).permute(2, 0, 3, 1, 4)
    s = q @ k.transpose(-1, -2) / math.sqrt(C // H)
    if mask is not None:
        s = s.masked_fill(~mask[:, None, None], float('-inf'))
    out = (s.softmax(-1) @ v).transpose(1, 2).reshape(x.shape)
    return layer.proj(out)


def test_cross_attention_is_dense_attention_to_the_context():
    """Cross-attention equals attention written out, with and without a
    context mask (a 0/1 integer mask acts as the bool mask)."""
    torch.manual_seed(0)
    layer = CrossAttention(8, 6, 2, init_cfg=INIT).double()
    assert layer.init_cfg == INIT
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    ctx = torch.randn(2, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(layer(x, ctx), _cross_oracle(layer, x, ctx))
    mask = torch.tensor([[1, 1, 0, 1, 0], [1, 0, 0, 0, 0]])
    want = _cross_oracle(layer, x, ctx, mask.bool())
    torch.testing.assert_close(layer(x, ctx, mask.bool()), want)
    torch.testing.assert_close(layer(x, ctx, mask), want)


@pytest.mark.xfail(strict=True, raises=RuntimeError,
                   reason='bug: forward transposes axes 1 and 2 of [B, '
                   '*spatial, H, D], which is [B, H, N, D] for one spatial '
                   'axis only')
def test_cross_attention_on_a_2d_map():
    """``x [B, H, W, C]`` (the documented ``[B, *spatial, C]``) works."""
    layer = CrossAttention(8, 6, 2)
    y = layer(torch.randn(2, 3, 4, 8), torch.randn(2, 5, 6))
    assert y.shape == (2, 3, 4, 8)


def test_cross_attention_errors():
    """Indivisible heads and a sample without context are refused with the
    whole message."""
    with pytest.raises(ValueError, match=_full(
            'embed_dims=8 is not divisible by num_heads=3')):
        CrossAttention(8, 6, 3)
    layer = CrossAttention(8, 6, 2)
    with pytest.raises(ValueError, match=_full(
            'context_mask: a sample has no context token; keep at least one '
            '(e.g. BOS)')):
        layer(torch.randn(2, 3, 8), torch.randn(2, 4, 6),
              torch.tensor([[True] * 4, [False] * 4]))


# --------------------------------------------------------- blocks and the MLP
class _TimeBlock(RelPosAttnBlock):
    rank = 1


def _block(**kw):
    args = dict(embed_dims=8, num_heads=2, kernel_size=3, dilation=2,
                pos_encoding=None, mlp_ratio=2.0, drop=0.25, drop_path=0.0,
                border='mask', backend='gather', init_cfg=INIT)
    args.update(kw)
    return _TimeBlock(**args)


def test_block_passes_its_arguments():
    """The block's attention and MLP get border, dropouts, backend, rank,
    causality (and the small-map rule that goes with it); ``init_cfg`` is
    kept."""
    block = _block()
    attn = block.attn
    assert block.init_cfg == INIT
    assert (attn.border, attn.backend, attn.rank, attn.dilation) == (
        'mask', 'gather', 1, (2, ))
    assert attn.proj_drop.p == 0.25 and block.mlp.drop.p == 0.25
    assert attn.small_map == 'shrink' and not attn.causal
    assert block.mlp.fc1.out_features == 16
    causal = _block(causal=True).attn
    assert causal.causal and causal.small_map == 'pad'
    assert causal.kernel_size == (5, )


def test_block_drop_path():
    """``drop_path > 0`` adds a :class:`DropPath` of that rate; 0 is the
    identity."""
    assert isinstance(_block().drop_path, nn.Identity)
    dp = _block(drop_path=0.5).drop_path
    assert not isinstance(dp, nn.Identity) and dp.drop_prob == 0.5


def test_mlp_default_has_no_dropout():
    """``Mlp``'s dropout defaults to 0 and is the one given."""
    assert Mlp(4, 8).drop.p == 0.0
    assert Mlp(4, 8, 0.3).drop.p == 0.3
