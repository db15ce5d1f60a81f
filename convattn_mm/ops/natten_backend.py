"""The ``'natten'`` backend: NATTEN's ``na1d/na2d/na3d`` (imported lazily).

NATTEN (>= 0.20) carries no position bias and only the ``'shift'`` border.
Position terms that can become extra head dimensions (the quadratic
encoding) or rotations (RoPE) are applied by the layer before the call, as
the op's plan says.

Two NATTEN paths exist: libnatten, its compiled CUDA kernels (fused,
forward and backward), and NATTEN's own flex-attention path, which is what a
pure-Python install (PyPI's sdist built without the CUDA toolkit) runs;
``natten.HAS_LIBNATTEN`` tells which. ``backend='auto'`` takes NATTEN on
CUDA only with libnatten. A forced ``backend='natten'`` on CUDA without
libnatten asks NATTEN to compile its flex path; on the CPU NATTEN 0.21 has
only its eager flex path (forward, ``N x N`` scores), which ``'auto'``
never takes.
"""
import functools
import importlib.util

import torch

from .windows import WindowSpec


def available():
    return importlib.util.find_spec('natten') is not None


@functools.lru_cache(maxsize=1)
def has_libnatten() -> bool:
    """Whether NATTEN's compiled kernels (libnatten) are installed."""
    if not available():
        return False
    import natten
    return bool(getattr(natten, 'HAS_LIBNATTEN', False))


def _compiles_flex(q) -> bool:
    """NATTEN's flex path is asked to compile on CUDA (NATTEN 0.21 has no
    compiled flex path on the CPU)."""
    return q.is_cuda and not has_libnatten()


def path(device_type: str) -> str:
    """Which NATTEN implementation runs on ``device_type``."""
    if not available():
        return 'natten is not installed'
    if device_type == 'cuda' and has_libnatten():
        return 'libnatten CUDA kernels (natten.HAS_LIBNATTEN is True)'
    if device_type == 'cuda':
        return ("NATTEN's flex path, compiled (natten.HAS_LIBNATTEN is "
                'False)')
    return ("NATTEN's flex path, eager: N x N scores, forward only (never "
            "taken by backend='auto')")


def natten_attention(q, k, v, spec: WindowSpec, scale, pos_bias=None,
                     rel_keys=None):
    """Same contract as :func:`~convattn_mm.ops.reference.reference_attention`
    (``[B, H, N, D]`` layout); the caller has checked the capabilities."""
    import natten
    fn = {1: natten.na1d, 2: natten.na2d, 3: natten.na3d}[spec.rank]
    B, H, N, D = q.shape
    dv = v.shape[-1]
    if B == 0:  # NATTEN returns None for an empty batch
        return v.new_zeros(B, H, N, dv)

    def to_natten(x):
        return x.reshape(B, H, *spec.in_shape, x.shape[-1]).movedim(1, -2)

    # NATTEN's CPU (flex) path takes power-of-two head dims, all equal: pad
    # with zeros (zero channels change no dot product and no output channel)
    width = max(8, 1 << (max(D, dv) - 1).bit_length())
    q, k = (torch.nn.functional.pad(t, [0, width - D]) for t in (q, k))
    v = torch.nn.functional.pad(v, [0, width - dv])
    out = fn(to_natten(q), to_natten(k), to_natten(v),
             kernel_size=tuple(a.kernel for a in spec.axes),
             dilation=tuple(a.dilation for a in spec.axes), scale=scale,
             **(dict(torch_compile=True) if _compiles_flex(q) else {}))
    out = out.movedim(-2, 1).reshape(B, H, N, out.shape[-1])
    return out[..., :dv]
