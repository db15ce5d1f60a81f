"""``CrossAttention``: queries of a map attend to a set of context tokens
(e.g. text), the "extra context tokens" beside a δ-attention window::

    y_q = W_o [ Σ_s softmax_s(scale · (W_q x_q)ᵀ (W_k c_s)) · W_v c_s ]_h

Context tokens have no position relative to the queries, so no position
term enters; ``context_mask`` leaves padded context tokens out.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from convattn_mm.registry import MODELS


@MODELS.register_module()
class CrossAttention(BaseModule):
    """Multi-head cross-attention from ``x [B, *spatial, C]`` to
    ``context [B, S, C_ctx]``.

    Args:
        embed_dims (int): query (and output) channels ``C``.
        context_dims (int): context channels ``C_ctx``.
        num_heads (int): heads; ``embed_dims`` must divide by it.

    Shapes:
        ``forward(x, context, context_mask=None)``: ``context_mask [B, S]``
        bool (True = a real token; every sample needs at least one) ->
        ``[B, *spatial, C]``.
    """

    def __init__(self, embed_dims, context_dims, num_heads, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims={embed_dims} is not divisible by '
                             f'num_heads={num_heads}')
        self.num_heads = num_heads
        self.q = nn.Linear(embed_dims, embed_dims)
        self.kv = nn.Linear(context_dims, 2 * embed_dims)
        self.proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x, context, context_mask=None):
        B, C, H = x.shape[0], x.shape[-1], self.num_heads
        # unflatten, not reshape(B, -1, ...): B may be 0
        q = self.q(x).unflatten(-1, (H, C // H)).transpose(1, 2)
        k, v = self.kv(context).unflatten(-1, (2, H, C // H)).permute(
            2, 0, 3, 1, 4)
        mask = None
        if context_mask is not None:
            if not context_mask.any(1).all():
                raise ValueError('context_mask: a sample has no context '
                                 'token; keep at least one (e.g. BOS)')
            mask = context_mask[:, None, None, :].to(torch.bool)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(*x.shape[:-1], C)
        return self.proj(out)
