"""The motion denoiser: δ-attention over time, conditioned on text.

For a noisy motion ``x_t [B, T, D]``, the diffusion step ``t`` and a
caption's tokens ``c [B, S, C_text]`` (pooled ``p``) it predicts the clean
motion ``x0 [B, T, D]``. With ``e = MLP(sin(t)) + W p`` each block is::

    h = h + g1 ⊙ RelPosAttention_1d(LN(h) ⊙ (1 + s1) + b1)    window or global
    h = h + CrossAttention(LN(h), c)                          text tokens
    h = h + g2 ⊙ MLP(LN(h) ⊙ (1 + s2) + b2)
    (b1, s1, g1, b2, s2, g2) = Linear(SiLU(e))                AdaLN, zero init

Frames interact only through relative offsets δ (RoPE, LogCPB or a bias
table), so the net has no absolute time index and runs at any length; most
layers see a local window, every ``global_every``-th layer the whole clip.
``abs_pos`` adds an absolute time table (``'learned'`` up to
``abs_pos_len`` frames or ``'sinusoidal'``) for comparison only.
"""
import math

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from convattn_mm.models.layers import CrossAttention, Mlp, RelPosAttention
from convattn_mm.ops import GLOBAL
from convattn_mm.registry import MODELS
from convattn_mm.utils import check_choice

ABS_POS = ('learned', 'sinusoidal')


def sinusoid(values, dims, max_period=10000.0):
    """``[N] -> [N, dims]``: ``(cos(v·ω_i), sin(v·ω_i))``, ω_i geometric."""
    half = dims // 2
    freqs = torch.exp(-math.log(max_period) *
                      torch.arange(half, device=values.device) / half)
    ang = values.float()[:, None] * freqs[None]
    return torch.cat([ang.cos(), ang.sin()], dim=-1)


class DenoiserBlock(BaseModule):
    """One block (see the module docstring); ``forward(h [B, T, C], emb
    [B, C], text, lengths [B])``."""

    def __init__(self, embed_dims, num_heads, text_dims, kernel_size,
                 pos_encoding, mlp_ratio, backend):
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dims, elementwise_affine=False)
        self.attn = RelPosAttention(
            embed_dims, num_heads, kernel_size=kernel_size, border='mask',
            pos_encoding=pos_encoding, backend=backend, small_map='shrink',
            rank=1)
        self.norm_x = nn.LayerNorm(embed_dims)
        self.cross = CrossAttention(embed_dims, text_dims, num_heads)
        self.norm2 = nn.LayerNorm(embed_dims, elementwise_affine=False)
        self.mlp = Mlp(embed_dims, int(embed_dims * mlp_ratio))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(embed_dims,
                                                      6 * embed_dims))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, h, emb, text, lengths):
        b1, s1, g1, b2, s2, g2 = self.ada(emb)[:, None].chunk(6, dim=-1)
        h = h + g1 * self.attn(self.norm1(h) * (1 + s1) + b1,
                               key_lengths=lengths)
        h = h + self.cross(self.norm_x(h), text['tokens'], text['mask'])
        return h + g2 * self.mlp(self.norm2(h) * (1 + s2) + b2)


@MODELS.register_module()
class MotionDenoiser(BaseModule):
    """x0-predicting denoiser over time (module docstring).

    Args:
        in_dims (int): motion features per frame ``D`` (263 / 251).
        text_dims (int): the text encoder's ``out_dims`` (the model fills
            it).
        embed_dims (int), depth (int), num_heads (int), mlp_ratio (float).
        kernel_size (int): odd local window in frames.
        global_every (int): every ``global_every``-th block is global
            (``depth`` + 1 or more: none).
        pos_encoding (dict): relative encoding over δ (frames).
        abs_pos (str | None): ``None``, ``'learned'`` or ``'sinusoidal'``.
        abs_pos_len (int): frames of the learned table.
        backend (str): attention backend (``'auto'``: gather on padded
            batches).

    Shapes:
        ``forward(x [B, T, D], timesteps [B], text, lengths [B])`` ->
        ``[B, T, D]``.
    """

    def __init__(self, in_dims, text_dims, embed_dims=128, depth=4,
                 num_heads=4, mlp_ratio=2.0, kernel_size=9, global_every=2,
                 pos_encoding=dict(type='RoPE'), abs_pos=None,
                 abs_pos_len=196, backend='auto', init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        check_choice(abs_pos, ABS_POS, 'abs_pos', extra=(None, ))
        if global_every < 1:
            raise ValueError(f'global_every={global_every} must be >= 1')
        self.embed_dims, self.abs_pos = embed_dims, abs_pos
        self.kernels = [
            GLOBAL if (i + 1) % global_every == 0 else kernel_size
            for i in range(depth)
        ]
        self.in_proj = nn.Linear(in_dims, embed_dims)
        self.time_mlp = nn.Sequential(nn.Linear(embed_dims, embed_dims),
                                      nn.SiLU(),
                                      nn.Linear(embed_dims, embed_dims))
        self.text_proj = nn.Linear(text_dims, embed_dims)
        self.abs_table = None
        if abs_pos == 'learned':
            self.abs_table = nn.Parameter(torch.zeros(abs_pos_len,
                                                      embed_dims))
            nn.init.trunc_normal_(self.abs_table, std=0.02)
        self.blocks = nn.ModuleList(
            DenoiserBlock(embed_dims, num_heads, text_dims, k, pos_encoding,
                          mlp_ratio, backend) for k in self.kernels)
        self.norm_out = nn.LayerNorm(embed_dims, elementwise_affine=False)
        self.ada_out = nn.Sequential(nn.SiLU(),
                                     nn.Linear(embed_dims, 2 * embed_dims))
        nn.init.zeros_(self.ada_out[1].weight)
        nn.init.zeros_(self.ada_out[1].bias)
        self.out_proj = nn.Linear(embed_dims, in_dims)

    def forward(self, x, timesteps, text, lengths):
        B, T = x.shape[:2]
        h = self.in_proj(x)
        if self.abs_pos == 'learned':
            if T > self.abs_table.shape[0]:
                raise ValueError(
                    f'{T} frames: the learned absolute table has '
                    f'{self.abs_table.shape[0]} (abs_pos_len)')
            h = h + self.abs_table[:T]
        elif self.abs_pos == 'sinusoidal':
            h = h + sinusoid(torch.arange(T, device=x.device),
                             self.embed_dims).to(h.dtype)
        emb = self.time_mlp(sinusoid(timesteps, self.embed_dims).to(h.dtype))
        emb = emb + self.text_proj(text['pooled'])
        for block in self.blocks:
            h = block(h, emb, text, lengths)
        shift, scale = self.ada_out(emb)[:, None].chunk(2, dim=-1)
        return self.out_proj(self.norm_out(h) * (1 + scale) + shift)
