"""Rotary position embedding on 1-3 D maps (Heo et al. 2024, RoPE-ViT).

Pairs of channels ``(x_{2i}, x_{2i+1})`` of each head are rotated by an angle
``θ_{h,i}(p) = Σ_a f_{h,i,a} · p_a`` of the token position ``p``; then
``(R(p_q) q)ᵀ (R(p_k) k) = qᵀ R(p_k - p_q) k`` depends on ``δ`` only.

* ``mode='axial'``: fixed frequencies; the pairs are split evenly between
  the axes and pair ``i`` of axis ``a`` turns at ``theta^(-i/n_a)`` along
  ``a`` only.
* ``mode='mixed'``: learned frequencies ``f [heads, D/2, rank]``, initialised
  as the axial ones rotated by a random angle per head (RoPE-Mixed).

Carries no bias, so every backend (NATTEN included) can run it.
"""

import torch

from convattn_mm.registry import MODELS
from convattn_mm.utils import check_choice

from convattn_mm.ops import PositionCarry

from .base import RelPosEncoding

MODES = ('axial', 'mixed')


@MODELS.register_module()
class RoPE(RelPosEncoding):
    """Args: ``mode`` (``'axial'`` or ``'mixed'``), ``theta`` (base period,
    100 as in RoPE-ViT)."""
    carry = PositionCarry(rotation=True)

    def __init__(self, num_heads, head_dims, rank, radius, step, mode='axial',
                 theta=100.0, init_cfg=None):
        super().__init__(num_heads, head_dims, rank, radius, step, init_cfg)
        check_choice(mode, MODES, 'mode')
        if head_dims % 2:
            raise ValueError(f'RoPE needs an even head_dims, got {head_dims}')
        self.mode, self.theta = mode, theta
        pairs = head_dims // 2
        freqs = torch.zeros(num_heads, pairs, rank)
        split = torch.arange(pairs) % rank  # which axis each pair turns on
        for a in range(rank):
            idx = (split == a).nonzero().flatten()
            n = max(len(idx), 1)
            freqs[:, idx, a] = theta**(-torch.arange(len(idx)).float() / n)
        if mode == 'mixed' and rank > 1:
            g = torch.Generator().manual_seed(0)
            for h in range(num_heads):
                rot = torch.linalg.qr(torch.randn(rank, rank, generator=g))[0]
                freqs[h] = freqs[h] @ rot
            self.freqs = torch.nn.Parameter(freqs)
        elif mode == 'mixed':
            self.freqs = torch.nn.Parameter(freqs)
        else:
            self.register_buffer('freqs', freqs, persistent=False)

    def rotate(self, x, coords):
        """Rotate ``x [B, H, N, D]`` by positions ``coords [N, rank]``."""
        angle = torch.einsum('hpr,nr->hnp', self.freqs.to(x),
                             coords.to(x))  # [H, N, D/2]
        cos, sin = angle.cos(), angle.sin()
        x1, x2 = x[..., 0::2], x[..., 1::2]
        out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)
        return out.flatten(-2)

    def transform_qk(self, q, k, q_coords, k_coords):
        return self.rotate(q, q_coords), self.rotate(k, k_coords)

    def extra_repr(self):
        return super().extra_repr() + f', mode={self.mode!r}'
