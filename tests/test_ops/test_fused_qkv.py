"""The C++ kernel's q/k/v-fused entry and its use by RelPosAttention:
outputs and gradients equal the reference at 1, 2 and 3 threads, in float32
and float64 (the head dims 32 run the AVX-512 path where the CPU has it)."""
import itertools

import pytest
import torch

from convattn_mm.models.layers import RelPosAttention
from convattn_mm.ops import fused_cpu as fused
from convattn_mm.ops import make_window
from convattn_mm.ops.reference import reference_attention

pytestmark = pytest.mark.skipif(fused.unavailable_reason() is not None,
                                reason='the C++ kernel is unavailable')

TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10),
       torch.float32: dict(rtol=2e-4, atol=2e-5)}


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize('nthreads', [1, 2, 3])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('border,K,d,D', [('shift', 5, 1, 32),
                                          ('mask', 3, 2, 16),
                                          ('zeros', 5, 1, 8)])
def test_fused_qkv_entry_matches_reference(threads, nthreads, dtype, border,
                                           K, d, D):
    threads(nthreads)
    B, H, spatial = 3, 2, (9, 11)
    spec = make_window(spatial, K, d, border)
    N, T = 99, torch.Size(spec.table_shape).numel()
    qkv = torch.randn(B, N, 3, H, D, dtype=dtype, requires_grad=True)
    bias = torch.randn(H, T, dtype=dtype, requires_grad=True)
    rel = (0.5 * torch.randn(H, T, D, dtype=dtype)).requires_grad_()
    out = fused.fused_cpu_attention_qkv(qkv, spec, D**-0.5, bias, rel)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    ref = reference_attention(q, k, v, spec, D**-0.5, bias, rel)
    torch.testing.assert_close(out, ref, **TOL[dtype])
    # token-major memory: [B, N, H, D] contiguous behind the [B, H, N, D] view
    assert out.transpose(1, 2).is_contiguous()
    g = torch.randn_like(ref)
    got = torch.autograd.grad(out, (qkv, bias, rel), g)
    want = torch.autograd.grad(ref, (qkv, bias, rel), g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL[dtype])
    assert got[0].shape == qkv.shape


def test_fused_qkv_entry_refuses_what_it_cannot_run():
    spec = make_window((6, 6), 3)
    qkv = torch.randn(1, 36, 3, 2, 8)
    with pytest.raises(NotImplementedError, match='query_stride'):
        fused.fused_cpu_attention_qkv(qkv, make_window((6, 6), 3,
                                                       query_stride=2), 0.5)
    with pytest.raises(TypeError, match='bfloat16'):
        fused.fused_cpu_attention_qkv(qkv.bfloat16(), spec, 0.5)
    with pytest.raises(ValueError, match=r'\[B, N, 3, H, D\]'):
        fused.fused_cpu_attention_qkv(qkv[:, :, :2], spec, 0.5)
    with pytest.raises(ValueError, match='pos_bias.shape'):
        fused.fused_cpu_attention_qkv(qkv, spec, 0.5, torch.zeros(2, 24))
    with pytest.raises(TypeError, match='scale'):
        fused.fused_cpu_attention_qkv(qkv, spec, '0.5')


@pytest.mark.parametrize('nthreads', [1, 2, 3])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_layer_fused_path_matches_gather(threads, nthreads, dtype):
    """RelPosAttention on the fused entry (backend 'auto') against the
    same layer on the gather backend: outputs and every gradient."""
    threads(nthreads)
    encodings = [None, dict(type='RelativeBiasTable'),
                 dict(type='QuadraticEncoding'), dict(type='LogCPB')]
    for enc, border in itertools.product(encodings, ('shift', 'zeros')):
        torch.manual_seed(0)
        fast = RelPosAttention(64, 2, kernel_size=5, border=border,
                               pos_encoding=enc).to(dtype)
        slow = RelPosAttention(64, 2, kernel_size=5, border=border,
                               pos_encoding=enc, backend='gather').to(dtype)
        slow.load_state_dict(fast.state_dict())
        x = torch.randn(2, 7, 9, 64, dtype=dtype, requires_grad=True)
        spec = fast.window((7, 9))[0]
        assert fast._attend_fused(x, spec) is not None
        assert slow._attend_fused(x, spec) is None
        ys = [m(x) for m in (fast, slow)]
        g = torch.randn_like(ys[0])
        grads = [torch.autograd.grad(y, [x, *m.parameters()], g)
                 for y, m in zip(ys, (fast, slow))]
        torch.testing.assert_close(ys[0], ys[1], **TOL[dtype])
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, **TOL[dtype])


@pytest.mark.parametrize('nthreads', [2, 3])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_unfused_entry_with_query_stride_threads(threads, nthreads, dtype):
    """The [B, H, N, D] entry (strided queries) at 2 and 3 threads: dk/dv
    are zeroed by the kernel, per work item."""
    threads(nthreads)
    spec = make_window((9, 11), 3, 2, 'zeros', query_stride=2)
    B, H, D, T = 3, 2, 32, torch.Size(spec.table_shape).numel()
    q, k, v = (torch.randn(B, H, 99, D, dtype=dtype, requires_grad=True)
               for _ in range(3))
    bias = torch.randn(H, T, dtype=dtype, requires_grad=True)
    out = fused.fused_cpu_attention(q, k, v, spec, 0.2, bias)
    ref = reference_attention(q, k, v, spec, 0.2, bias)
    torch.testing.assert_close(out, ref, **TOL[dtype])
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(out, (q, k, v, bias), g),
                    torch.autograd.grad(ref, (q, k, v, bias), g)):
        torch.testing.assert_close(a, b, **TOL[dtype])
