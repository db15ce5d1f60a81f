"""Continuous log-spaced relative position bias (Swin-V2)::

    b^h_δ = 16 · sigmoid( MLP( sign(δ) · log2(1 + 8|δ| / s) / log2(8) )_h )

with ``s`` the window radius in pixels per axis (so offsets of the trained
window map to ``[-log2(9)/3, log2(9)/3]``, about ``[-1.06, 1.06]``, as in
Swin-V2; larger ones extrapolate smoothly): no table to resize when the
window changes.
"""
import math

import torch

from convattn_mm.registry import MODELS
from convattn_mm.ops import PositionCarry
from .base import RelPosEncoding

#: offsets of the trained window are scaled to ``[-SPAN, SPAN]`` before the
#: log, and the log divided by ``log2(SPAN)`` (Swin-V2: 8)
LOG_SPAN = 8
#: the bias lies in ``(0, BIAS_RANGE)`` (Swin-V2: 16)
BIAS_RANGE = 16


@MODELS.register_module()
class LogCPB(RelPosEncoding):
    """Args: ``hidden_dims`` (MLP width, 512 in Swin-V2)."""
    carry = PositionCarry(bias=True)

    def __init__(self, num_heads, head_dims, rank, radius, step,
                 hidden_dims=512, init_cfg=None):
        super().__init__(num_heads, head_dims, rank, radius, step, init_cfg)
        self.hidden_dims = hidden_dims
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(rank, hidden_dims), torch.nn.ReLU(inplace=True),
            torch.nn.Linear(hidden_dims, num_heads, bias=False))
        norm = [max(r * s, 1) for r, s in zip(self.radius, self.step)]
        self.register_buffer('norm', torch.tensor(norm, dtype=torch.float),
                             persistent=False)

    def log_coords(self, offsets):
        x = offsets.to(self.norm) / self.norm * LOG_SPAN
        return torch.sign(x) * torch.log2(1 + x.abs()) / math.log2(LOG_SPAN)

    def pos_bias(self, offsets):
        return BIAS_RANGE * torch.sigmoid(self.mlp(self.log_coords(offsets))).t()
