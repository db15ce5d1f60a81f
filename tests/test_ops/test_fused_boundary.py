"""The C++ kernel's public boundary: sizes and types are checked before a
pointer is handed over, and an empty batch is an empty output everywhere."""
import pytest
import torch

from convattn_mm.models.layers import ConvAttention, RelPosAttention
from convattn_mm.ops import attention_bhnd, make_window, na2d
from convattn_mm.ops import fused_cpu as fused

pytestmark = pytest.mark.skipif(fused.unavailable_reason() is not None,
                                reason='the C++ kernel is unavailable')

CPU_BACKENDS = ['reference', 'gather', 'fused_cpu']


def _qkv(B=1, H=2, N=36, D=8):
    return (torch.randn(B, H, N, D) for _ in range(3))


@pytest.mark.parametrize('bias_shape,match', [
    ((2, 24), r'pos_bias.shape=\(2, 24\)'),   # one entry short of 5 x 5
    ((2, 25, 1), r'pos_bias.shape'),
    ((1, 25), r'pos_bias.shape'),
])
def test_wrong_size_bias_is_refused(bias_shape, match):
    q, k, v = _qkv()
    spec = make_window((6, 6), 3, border='shift')  # table 5 x 5
    with pytest.raises(ValueError, match=match):
        attention_bhnd(q, k, v, spec, 0.5, pos_bias=torch.zeros(bias_shape),
                       backend='fused_cpu')


def test_wrong_sizes_of_tensors_and_rel_keys_are_refused():
    spec = make_window((6, 6), 3)
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r'rel_keys.shape=\(2, 25, 4\)'):
        attention_bhnd(q, k, v, spec, 0.5, rel_keys=torch.zeros(2, 25, 4),
                       backend='fused_cpu')
    q2, k2, v2 = _qkv(N=35)
    with pytest.raises(ValueError, match=r'q.shape=\(1, 2, 35, 8\)'):
        attention_bhnd(q2, k2, v2, spec, 0.5, backend='fused_cpu')
    with pytest.raises(ValueError, match=r'k.shape'):
        attention_bhnd(q, k[:, :1], v, spec, 0.5, backend='fused_cpu')
    with pytest.raises(ValueError, match=r'v.shape'):
        attention_bhnd(q, k, v[:, :, :20], spec, 0.5, backend='fused_cpu')
    with pytest.raises(TypeError, match=r'k.dtype=torch.int64'):
        attention_bhnd(q, k.long(), v, spec, 0.5, backend='fused_cpu')


@pytest.mark.parametrize('backend', CPU_BACKENDS)
@pytest.mark.parametrize('scale', ['0.5', None])
def test_non_number_scale_is_refused_by_every_backend(backend, scale):
    q, k, v = _qkv()
    with pytest.raises(TypeError):
        attention_bhnd(q, k, v, make_window((6, 6), 3), scale,
                       backend=backend)


@pytest.mark.parametrize('backend', CPU_BACKENDS)
@pytest.mark.parametrize('border', ['shift', 'zeros'])
def test_empty_batch_every_backend(backend, border):
    q = torch.randn(0, 6, 5, 2, 8, requires_grad=True)
    bias = torch.zeros(2, 5, 5) if border == 'shift' else torch.zeros(2, 3, 3)
    y = na2d(q, q, q, 3, border=border, query_stride=2, pos_bias=bias,
             backend=backend)
    assert y.shape == (0, 3, 3, 2, 8)
    y.sum().backward()
    assert q.grad.shape == q.shape


@pytest.mark.parametrize('backend', ['auto', 'gather', 'fused_cpu'])
def test_empty_batch_layers(backend):
    layer = RelPosAttention(16, 2, kernel_size=3, backend=backend,
                            pos_encoding=dict(type='RelativeBiasTable'))
    assert layer(torch.randn(0, 6, 6, 16)).shape == (0, 6, 6, 16)
    for qk_dims in (0, 4):
        conv = ConvAttention(16, 9, out_dims=8, kernel_size=3,
                             query_stride=2, qk_dims=qk_dims, backend=backend)
        x = torch.randn(0, 16, 7, 7, requires_grad=True)
        y = conv(x)
        assert y.shape == (0, 8, 4, 4)
        y.sum().backward()
        assert x.grad.shape == x.shape


def test_import_starts_the_build_in_the_background(tmp_path):
    """An empty cache: importing the backend starts the build in a thread
    (here with a compiler that fails at once, so nothing is compiled); the
    first use waits for it and reports its outcome."""
    import os
    import subprocess
    import sys
    code = ('from convattn_mm.ops import fused_cpu\n'
            'print(fused_cpu._prebuild_thread is not None)\n'
            'print(fused_cpu.unavailable_reason().splitlines()[0])\n')
    env = dict(os.environ, CONVATTN_MM_CACHE=str(tmp_path), CXX='false')
    env.pop('CONVATTN_MM_NO_PREBUILD', None)
    out = subprocess.run([sys.executable, '-c', code], env=env, text=True,
                         capture_output=True, check=True).stdout.split('\n')
    assert out[0] == 'True'
    assert out[1].startswith('compiling') and out[1].endswith('failed:')
