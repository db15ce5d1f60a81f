"""The ``'natten'`` backend: NATTEN's ``na1d/na2d/na3d`` (imported lazily).

NATTEN (>= 0.20) carries no position bias and only the ``'shift'`` border;
its fused kernels need a GPU for training (on the CPU it runs forward only,
through flex attention). Position terms that can become extra head dimensions
(the quadratic encoding) or rotations (RoPE) are applied by the layer before
the call.
"""
import importlib.util

import torch

from .windows import WindowSpec


def available():
    return importlib.util.find_spec('natten') is not None


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
             dilation=tuple(a.dilation for a in spec.axes), scale=scale)
    out = out.movedim(-2, 1).reshape(B, H, N, out.shape[-1])
    return out[..., :dv]
