"""Brute-force neighbourhood attention: the ground truth of the tests.

Builds the full ``[Nq, N]`` score matrix and a dense window mask derived here
from the definitions in :mod:`convattn_mm.ops.windows` by plain loops (not by
the index tables the fast paths use), and realises the ``'zeros'`` border by
literally zero-padding keys and values. Memory is quadratic in tokens: use it
on small maps only.
"""
import math

import torch

from .windows import WindowSpec


def _axis_dense(length, kernel, dilation, rule, stride, pad):
    """Dense window of one axis over a (possibly padded) key axis.

    Returns ``inwin [Lq, L + 2*pad]`` bool and ``table [Lq, L + 2*pad]`` long
    (table index where in the window, else -1).
    """
    n_keys = length + 2 * pad
    queries = list(range(0, length, stride))
    inwin = torch.zeros(len(queries), n_keys, dtype=torch.bool)
    table = torch.full((len(queries), n_keys), -1, dtype=torch.long)
    for qi, i in enumerate(queries):
        if rule == 'shift':
            group = [k for k in range(length) if k % dilation == i % dilation]
            j = group.index(i)
            start = min(max(j - kernel // 2, 0), len(group) - kernel)
            keys = group[start:start + kernel]
            radius = kernel - 1
        else:
            radius = (kernel - 1) // 2
            keys = [
                i + dilation * t for t in range(-radius, radius + 1)
                if 0 <= i + dilation * t + pad < n_keys
            ]
            keys = [k for k in keys if rule == 'zeros' or 0 <= k < length]
        for k in keys:
            inwin[qi, k + pad] = True
            table[qi, k + pad] = (k - i) // dilation + radius
    return inwin, table


def reference_attention(q, k, v, spec: WindowSpec, scale, pos_bias=None,
                        rel_keys=None, dropout_p=0.0, key_mask=None):
    """Dense neighbourhood attention in the ``[B, H, N, D]`` layout.

    Args:
        q: ``[B, H, N, D]`` (all queries; strided ones are picked here).
        k: ``[B, H, N, D]``; v: ``[B, H, N, Dv]``.
        spec: the window.
        scale: softmax scale.
        pos_bias: ``[H, T]`` or None. rel_keys: ``[H, T, D]`` or None.
        key_mask: ``[B, Nq, N]`` bool or None: False drops that key from
            that query's softmax (key padding, see
            :mod:`convattn_mm.ops.key_padding`).

    Returns:
        ``[B, H, Nq, Dv]``: ``softmax_δ(scale·qᵀ(k_{q+δ} + r_δ) + b_δ) v``.
    """
    B, H = q.shape[:2]
    spatial = spec.in_shape
    pads = [
        (a.kernel - 1) // 2 * a.dilation if a.rule == 'zeros' else 0
        for a in spec.axes
    ]
    if any(pads):
        k = _zero_pad(k, B, H, spatial, pads)
        v = _zero_pad(v, B, H, spatial, pads)
    inwin = torch.ones((), dtype=torch.bool)
    table = torch.zeros((), dtype=torch.long)
    for a, p in zip(spec.axes, pads):
        w, t = _axis_dense(a.length, a.kernel, a.dilation, a.rule, a.stride, p)
        nq = inwin.dim() // 2
        shape_a = (1, ) * nq + (w.shape[0], ) + (1, ) * nq + (w.shape[1], )
        inwin = inwin.reshape(inwin.shape[:nq] + (1, ) + inwin.shape[nq:] +
                              (1, )) & w.reshape(shape_a)
        table = table.reshape(table.shape[:nq] + (1, ) + table.shape[nq:] +
                              (1, )) * a.table_size + t.reshape(shape_a)
    nq, nk = math.prod(spec.out_shape), k.shape[2]
    inwin, table = inwin.reshape(nq, nk), table.reshape(nq, nk)
    table = table.clamp(min=0).to(q.device)
    inwin = inwin.to(q.device)

    qidx = spec.query_index(q.device)
    qs = q[:, :, qidx]
    scores = torch.einsum('bhqd,bhkd->bhqk', qs, k) * scale
    if rel_keys is not None:
        qr = torch.einsum('bhqd,htd->bhqt', qs, rel_keys) * scale
        scores = scores + torch.gather(qr, 3, table.expand(B, H, nq, nk))
    if pos_bias is not None:
        scores = scores + pos_bias[:, table]
    scores = scores.masked_fill(~inwin, float('-inf'))
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None], float('-inf'))
    attn = scores.softmax(dim=-1)
    if dropout_p > 0:
        attn = torch.nn.functional.dropout(attn, dropout_p)
    return torch.einsum('bhqk,bhkd->bhqd', attn, v)


def _zero_pad(x, B, H, spatial, pads):
    x = x.reshape(B, H, *spatial, x.shape[-1])
    widths = []
    for p in reversed(pads):
        widths += [p, p]
    x = torch.nn.functional.pad(x, [0, 0] + widths)
    return x.flatten(2, -2)  # not reshape(..., -1, ...): B may be 0
