"""The ``'gather'`` backend: neighbourhood attention in plain PyTorch.

Gathers each query's ``Kw`` keys and values with the window's index tables
(``[B, H, Nq, Kw, D]``), so it runs forward and backward on any device and
dtype, at ``Kw`` times the memory of the inputs. The fallback for everything
the fused kernels cannot take, and a second opinion in the tests.
"""
import torch

from .windows import MASKED, WindowSpec


def _scores(q, k, spec, scale, pos_bias, rel_keys, select=None):
    """Scores ``[B, H, Nq', Kw]`` of the output queries ``select`` (all
    when None), the neighbour table rows and the is-key mask."""
    nbr, tbl = spec.neighbors(q.device)
    qidx = spec.query_index(q.device)
    if select is not None:
        nbr, tbl, qidx = nbr[select], tbl[select], qidx[select]
    if spec.strided or select is not None:
        q = q[:, :, qidx]
    is_key = (nbr >= 0).to(q.dtype)  # [Nq, Kw]; 0 for masked and zero keys
    idx = nbr.clamp(min=0).long()
    tbl = tbl.long()
    B, H, Nq = q.shape[:3]
    scores = torch.einsum('bhqd,bhqkd->bhqk', q, k[:, :, idx]) * is_key
    if rel_keys is not None:
        qr = torch.einsum('bhqd,htd->bhqt', q, rel_keys)
        scores = scores + torch.gather(qr, 3,
                                       tbl.expand(B, H, Nq, tbl.shape[1]))
    scores = scores * scale
    if pos_bias is not None:
        scores = scores + pos_bias[:, tbl]
    scores = scores.masked_fill(nbr == MASKED, float('-inf'))
    return scores, nbr, tbl, is_key, idx


def gather_attention(q, k, v, spec: WindowSpec, scale, pos_bias=None,
                     rel_keys=None, dropout_p=0.0, key_mask=None):
    """Same contract as :func:`~convattn_mm.ops.reference.reference_attention`
    (``[B, H, N, D]`` layout), except that ``key_mask`` is ``[B, Nq, Kw]``
    (per window slot, see :mod:`convattn_mm.ops.key_padding`)."""
    scores, nbr, tbl, is_key, idx = _scores(q, k, spec, scale, pos_bias,
                                            rel_keys)
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None], float('-inf'))
    attn = scores.softmax(dim=-1) * is_key  # zero keys carry zero values
    if dropout_p > 0:
        attn = torch.nn.functional.dropout(attn, dropout_p)
    return torch.einsum('bhqk,bhqkd->bhqd', attn, v[:, :, idx])


def attention_weights(q, k, spec: WindowSpec, scale, pos_bias=None,
                      rel_keys=None, select=None):
    """Attention weights of chosen output queries (for analysis).

    Args:
        select: ``[S]`` long, flat indices of output queries (None: all).
    Returns:
        dict with ``weights [B, H, S, Kw]`` (0 on masked slots), ``keys
        [S, Kw]`` (flat key index; -1 masked, -2 zero-padded), ``table
        [S, Kw]`` (flat table index) and ``offsets [S, Kw, rank]`` (δ, px).
    """
    scores, nbr, tbl, _, _ = _scores(q, k, spec, scale, pos_bias, rel_keys,
                                     select)
    offsets = spec.table_offsets().to(q.device)[tbl.long()]
    return dict(weights=scores.softmax(-1), keys=nbr, table=tbl,
                offsets=offsets)
