"""The one backend decision: plans for fake CUDA and CPU requests, the
encodings' carry declarations, and where extra head dims are exact."""
import itertools

import pytest
import torch

from convattn_mm.models.layers import RelPosAttention
from convattn_mm.ops import (AUTO_ORDER, BACKENDS, PositionCarry,
                             attention_bhnd, backend_support,
                             extra_dims_refusal, make_window, plan_attention)
from convattn_mm.ops import flex as flex_mod
from convattn_mm.ops import natten_backend

CARRIES = {
    'nothing': PositionCarry(),
    'bias table': PositionCarry(bias=True),
    'quadratic': PositionCarry(bias=True, extra_dims=True),
    'relative keys': PositionCarry(bias=True, rel_keys=True, rotation=True),
    'rope': PositionCarry(rotation=True),
}
#: backends whose memory grows linearly with tokens for a window
LINEAR = {'natten', 'flex', 'gather', 'fused_cpu'}


def _request(device='cuda', dtype=torch.float32, training=True,
             carry=PositionCarry(), dropout=False):
    return dict(device=device, dtype=dtype, training=training,
                dropout=dropout, carry=carry)


@pytest.fixture
def fake_cuda(monkeypatch):
    """CUDA requests on a CPU machine: Triton present, libnatten as asked."""

    def set_libnatten(value):
        monkeypatch.setattr(natten_backend, 'available', lambda: True)
        monkeypatch.setattr(natten_backend, 'has_libnatten', lambda: value)

    real = flex_mod.unavailable_reason
    monkeypatch.setattr(
        flex_mod, 'unavailable_reason',
        lambda dev: None if dev == 'cuda' else real(dev))
    return set_libnatten


@pytest.mark.parametrize('libnatten', [True, False])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('training', [True, False])
def test_no_window_plan_is_quadratic_on_cuda(fake_cuda, libnatten, dtype,
                                             training):
    """For every window, border, encoding: a linear-memory backend, and
    flex only in its compiled form (the op has no eager flex)."""
    fake_cuda(libnatten)
    for (border, K, d, s), carry in itertools.product(
            [('shift', 7, 1, 1), ('shift', 3, 2, 1), ('mask', 7, 1, 1),
             ('zeros', 3, 1, 2), ('zeros', 3, 1, 1)], CARRIES.values()):
        spec = make_window((32, 40), K, d, border, s)
        req = _request(dtype=dtype, training=training, carry=carry)
        plan = plan_attention('auto', spec, req)
        assert plan.backend in LINEAR, (border, carry, plan)
        if plan.backend == 'flex':
            assert 'compile' in plan.detail
        if plan.backend == 'natten':
            assert libnatten and border == 'shift' and s == 1
            assert 'libnatten CUDA kernels' in plan.detail


def test_cuda_plans(fake_cuda):
    fake_cuda(True)
    shift = make_window((32, 40), 7)
    zeros = make_window((32, 40), 3, border='zeros')
    plan = plan_attention('auto', shift, _request(carry=CARRIES['quadratic']))
    assert (plan.backend, plan.bias_as) == ('natten', 'extra_dims')
    plan = plan_attention('auto', shift, _request(carry=CARRIES['rope']))
    assert (plan.backend, plan.bias_as, plan.rotation) == ('natten', None,
                                                           True)
    plan = plan_attention('auto', shift,
                          _request(carry=CARRIES['bias table']))
    assert (plan.backend, plan.bias_as) == ('flex', 'bias')
    # the SAResNet(conv_init=True) case: quadratic under zeros is a bias
    plan = plan_attention('auto', zeros, _request(carry=CARRIES['quadratic']))
    assert (plan.backend, plan.bias_as) == ('flex', 'bias')
    # half precision: the quadratic identity is not exact, so a bias
    plan = plan_attention('auto', shift, _request(
        dtype=torch.float16, carry=CARRIES['quadratic']))
    assert (plan.backend, plan.bias_as) == ('flex', 'bias')
    # dropout: only gather has it
    plan = plan_attention('auto', shift, _request(dropout=True))
    assert plan.backend == 'gather'


def test_cuda_without_libnatten_or_triton(fake_cuda, monkeypatch):
    fake_cuda(False)
    spec = make_window((32, 40), 7)
    support = backend_support(spec, _request(carry=CARRIES['rope']))
    assert support.plan.backend == 'flex'
    assert 'HAS_LIBNATTEN is False' in support.reasons['natten']
    assert "NATTEN's flex path, compiled" in support.natten_path
    monkeypatch.setattr(flex_mod, 'unavailable_reason',
                        lambda dev: 'Triton is not installed')
    support = backend_support(spec, _request(carry=CARRIES['bias table']))
    assert support.plan.backend == 'gather'
    assert support.reasons['flex'] == 'Triton is not installed'
    assert 'flex' in str(support) and 'gather' in str(support)


def test_cpu_plans_unchanged():
    """The CPU default stays the C++ kernel, carrying every term as is."""
    spec = make_window((12, 13), 7)
    for carry in CARRIES.values():
        for training in (True, False):
            plan = plan_attention('auto', spec, _request(
                'cpu', training=training, carry=carry))
            assert plan.backend == 'fused_cpu'
            assert plan.bias_as == ('bias' if carry.bias else None)
    assert AUTO_ORDER['cpu'] == ('fused_cpu', 'gather')


def test_forced_backend_refusals():
    spec = make_window((12, 13), 3, border='zeros')
    with pytest.raises(NotImplementedError,
                       match='FlexAttention does not support backward'):
        plan_attention('flex', spec, _request('cpu', training=True))
    support = backend_support(spec, _request('cpu', carry=CARRIES[
        'quadratic']), backend='natten')
    assert support.plan is None
    assert set(support.reasons) == set(BACKENDS)


@pytest.mark.parametrize('border', ['shift', 'mask', 'zeros'])
def test_extra_dims_refusal(border):
    spec = make_window((12, 13), 3, border=border)
    reason = extra_dims_refusal(spec, torch.float32)
    assert (reason is None) == (border != 'zeros')
    assert extra_dims_refusal(make_window((12, 13), 3), torch.bfloat16)


def test_encodings_declare_their_carriage():
    def layer(enc):
        return RelPosAttention(16, 2, kernel_size=3, pos_encoding=enc)

    assert layer(dict(type='RelativeBiasTable')).pos_encoding.carry == \
        PositionCarry(bias=True)
    assert layer(dict(type='LogCPB')).pos_encoding.carry == \
        PositionCarry(bias=True)
    assert layer(dict(type='QuadraticEncoding')).pos_encoding.carry == \
        PositionCarry(bias=True, extra_dims=True)
    assert layer(dict(type='RoPE')).pos_encoding.carry == \
        PositionCarry(rotation=True)
    assert layer(dict(type='RelativeKeys')).pos_encoding.carry == \
        PositionCarry(bias=True, rel_keys=True, rotation=True)
    bare = layer(dict(type='RelativeKeys', use_u=False, use_v=False))
    assert bare.pos_encoding.carry == PositionCarry(rel_keys=True)
    offsets = make_window((5, 5), 3).table_offsets()
    assert bare.pos_encoding.pos_bias(offsets) is None


@pytest.mark.parametrize('border', ['shift', 'mask', 'zeros'])
def test_quadratic_as_extra_dims_vs_bias_vs_reference(border):
    """Every border: extra dims == bias == reference where exact (shift,
    mask); under zeros the extra-dims form differs. That is what CUDA
    computed for SAResNet(conv_init=True) before the plan: the layer
    augmented q/k because it guessed NATTEN, and the op then ran a bias
    backend with zero-padded (augmented) keys. Evaluated here on the CPU
    with the border CUDA would use."""
    from convattn_mm.models.backbones import SAResNet
    layer = RelPosAttention(
        8, 2, kernel_size=3, border=border,
        pos_encoding=dict(type='QuadraticEncoding', mode='full',
                          init_mass=0.6)).double()
    spatial = (7, 8)
    x = torch.randn(1, *spatial, 8, dtype=torch.float64)
    spec, _ = layer.window(spatial)
    qkv = layer.qkv(x).reshape(1, -1, 3, 2, 4).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    bias_plan = plan_attention('gather', spec, _request(
        'cpu', torch.float64, False, PositionCarry(bias=True)))
    qb, kb, bias, _ = layer.position_terms(q, k, spec, plan=bias_plan)
    as_bias = attention_bhnd(qb, kb, v, spec, layer.scale, bias,
                             backend='gather')
    ref = attention_bhnd(qb, kb, v, spec, layer.scale, bias,
                         backend='reference')
    extra_plan = bias_plan.__class__('gather', 'extra_dims')
    qe, ke, none, _ = layer.position_terms(q, k, spec, plan=extra_plan)
    assert none is None and qe.shape[-1] == 4 + 6
    as_dims = attention_bhnd(qe, ke, v, spec, layer.scale, backend='gather')
    torch.testing.assert_close(as_bias, ref, rtol=1e-10, atol=1e-10)
    if border == 'zeros':
        assert (as_dims - ref).abs().max() > 1e-3
        # and the plan never takes extra dims there, on any device
        for dev in ('cpu', 'cuda'):
            req = _request(dev, torch.float32, True, layer.pos_encoding.carry)
            for name in BACKENDS:
                if BACKENDS[name].check(spec, req) is None:
                    assert plan_attention(name, spec, req).bias_as == 'bias'
        net = SAResNet(depth=18, conv_init=True)
        convs = [m for m in net.modules() if isinstance(m, RelPosAttention)]
        assert convs and all(m.border == 'zeros' for m in convs)
    else:
        torch.testing.assert_close(as_dims, ref, rtol=1e-9, atol=1e-9)


def test_autocast_dtype_reaches_the_plan(fake_cuda):
    """Under autocast a float32 query is planned in the autocast dtype:
    the quadratic encoding then travels as a bias, not as extra dims."""
    from convattn_mm.ops import attention_request
    fake_cuda(True)
    spec = make_window((32, 40), 7)
    q = torch.randn(1, 2, 4, 8)
    carry = CARRIES['quadratic']
    with torch.autocast('cpu', dtype=torch.bfloat16):
        req = attention_request(q, carry)
    assert req['dtype'] == torch.bfloat16
    assert plan_attention('auto', spec, dict(req, device='cuda')).bias_as \
        == 'bias'
    layer = RelPosAttention(16, 2, kernel_size=3, border='mask',
                            pos_encoding=dict(type='QuadraticEncoding'))
    x = torch.randn(1, 6, 7, 16)
    ref = layer(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = layer(x)
    torch.testing.assert_close(got.float(), ref, rtol=0.05, atol=0.05)
