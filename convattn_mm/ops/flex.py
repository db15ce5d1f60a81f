"""The ``'flex'`` backend: ``torch.nn.attention.flex_attention`` with the
window as ``mask_mod`` and the position terms in ``score_mod``.

Carries every position term: the bias table is read by offset, relative keys
as a precomputed ``qᵀR`` table ``[B, H, Nq, T]`` gathered by offset. The
``'zeros'`` border zero-pads keys and values first. Training needs a GPU
(torch: "FlexAttention does not support backward on CPU"); on the CPU it is an
inference path. The window logic is per axis (``[Lq, L]`` lookups), so no
``N x N`` tensor is built besides flex's own block mask.
"""

import torch

from .windows import WindowSpec


def available():
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
        return True
    except ImportError:
        return False


def _axis_lookup(a, pad, device):
    """``[Lq, L + 2*pad]`` long: table index of (query, key) or -1."""
    key, valid, table = a.neighbors()
    if a.rule == 'zeros':
        valid = torch.ones_like(valid)
    lq = key.shape[0]
    out = torch.full((lq, a.length + 2 * pad), -1, dtype=torch.long)
    rows = torch.arange(lq)[:, None].expand_as(key)
    out[rows[valid], key[valid] + pad] = table[valid]
    return out.to(device)


def flex_attention_op(q, k, v, spec: WindowSpec, scale, pos_bias=None,
                      rel_keys=None):
    """Same contract as :func:`~convattn_mm.ops.reference.reference_attention`
    (``[B, H, N, D]`` layout)."""
    from torch.nn.attention.flex_attention import (create_block_mask,
                                                   flex_attention)
    B, H = q.shape[:2]
    device = q.device
    pads = [(a.kernel - 1) // 2 * a.dilation if a.rule == 'zeros' else 0
            for a in spec.axes]
    if any(pads):
        from .reference import _zero_pad
        k = _zero_pad(k, B, H, spec.in_shape, pads)
        v = _zero_pad(v, B, H, spec.in_shape, pads)
    if spec.strided:
        q = q[:, :, spec.query_index(device)]
    lookups = [_axis_lookup(a, p, device) for a, p in zip(spec.axes, pads)]
    q_sizes = spec.out_shape
    k_sizes = [a.length + 2 * p for a, p in zip(spec.axes, pads)]
    t_sizes = spec.table_shape

    def coords(idx, sizes):
        out = []
        for n in reversed(sizes):
            out.append(idx % n)
            idx = idx // n
        return out[::-1]

    def table_index(q_idx, kv_idx):
        qc, kc = coords(q_idx, q_sizes), coords(kv_idx, k_sizes)
        t = torch.zeros_like(q_idx)
        ok = torch.ones_like(q_idx, dtype=torch.bool)
        for lut, a, b, n in zip(lookups, qc, kc, t_sizes):
            e = lut[a, b]
            ok = ok & (e >= 0)
            t = t * n + e.clamp(min=0)
        return t, ok

    def mask_mod(b, h, q_idx, kv_idx):
        return table_index(q_idx, kv_idx)[1]

    qr = None
    if rel_keys is not None:
        qr = torch.einsum('bhqd,htd->bhqt', q, rel_keys) * scale

    def score_mod(score, b, h, q_idx, kv_idx):
        t, _ = table_index(q_idx, kv_idx)
        if pos_bias is not None:
            score = score + pos_bias[h, t]
        if qr is not None:
            score = score + qr[b, h, q_idx, t]
        return score

    nq, nk = q.shape[2], k.shape[2]
    block = create_block_mask(mask_mod, None, None, nq, nk, device=device)
    dv = v.shape[-1]
    if dv != q.shape[-1]:  # flex wants equal head dims: pad values
        v = torch.nn.functional.pad(v, [0, q.shape[-1] - dv]) \
            if dv < q.shape[-1] else v
    out = flex_attention(q, k, v, score_mod=score_mod, block_mask=block,
                         scale=scale)
    return out[..., :dv]
