"""Independent oracles: the layer and the encodings against hand-written
closed forms that share no code with the package (no window tables, no
encoding methods, no op backends)."""
import math

import pytest
import torch

from convattn_mm.models.encodings import (LogCPB, QuadraticEncoding,
                                          RelativeBiasTable, RelativeKeys,
                                          alpha_for_mass)
from convattn_mm.models.layers import RelPosAttention


def dense_mha(x, qkv_w, qkv_b, proj_w, proj_b, heads, head_dims,
              allowed=None, bias=None):
    """Multi-head attention written out: ``x [N, C]``, ``allowed [N, N]``
    bool (None: all), ``bias [heads, N, N]`` (None: 0). Returns ``[N, C']``.
    """
    qkv = x @ qkv_w.t() + qkv_b  # [N, 3 * heads * head_dims]
    q, k, v = qkv.split(heads * head_dims, dim=-1)
    outs = []
    for h in range(heads):
        cols = slice(h * head_dims, (h + 1) * head_dims)
        scores = (q[:, cols] @ k[:, cols].t()) / math.sqrt(head_dims)
        if bias is not None:
            scores = scores + bias[h]
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float('-inf'))
        outs.append(torch.softmax(scores, dim=-1) @ v[:, cols])
    return torch.cat(outs, dim=-1) @ proj_w.t() + proj_b


def _params(layer):
    return (layer.qkv.weight, layer.qkv.bias, layer.proj.weight,
            layer.proj.bias)


@pytest.mark.parametrize('backend', ['auto', 'gather', 'reference'])
@pytest.mark.parametrize('embed_dims,heads,head_dims', [(16, 2, None),
                                                        (12, 3, 6)])
def test_global_layer_is_dense_multi_head_attention(backend, embed_dims,
                                                    heads, head_dims):
    """No encoding and a global window: plain MHA with scale
    ``head_dims ** -0.5`` (not ``embed_dims ** -0.5``), output and
    gradients of every parameter."""
    layer = RelPosAttention(embed_dims, heads, head_dims=head_dims,
                            kernel_size='global', backend=backend).double()
    hd = layer.head_dims
    x = torch.randn(2, 5, 6, embed_dims, dtype=torch.float64)
    y = layer(x)
    want = torch.stack([
        dense_mha(xb.reshape(30, embed_dims), *_params(layer), heads, hd)
        for xb in x
    ]).reshape(y.shape)
    torch.testing.assert_close(y, want, rtol=1e-10, atol=1e-12)
    w = torch.randn_like(y)
    got = torch.autograd.grad((y * w).sum(), _params(layer))
    ref = torch.autograd.grad((want * w).sum(), _params(layer))
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('border', ['mask', 'zeros'])
def test_windowed_layer_with_bias_table_is_masked_dense_attention(border):
    """A 3x5 window (dilation 2 on the second axis) with a bias table on a
    7x9 map: dense attention over the pairs with |Δy| <= 1 and Δx in
    {-4, -2, 0, 2, 4}, bias ``table[h, Δy + 1, Δx / 2 + 2]``. Under
    ``'zeros'`` out-of-map window slots are extra keys with zero key and
    value that still carry their bias."""
    heads, C, Hm, Wm = 2, 8, 7, 9
    layer = RelPosAttention(C, heads, kernel_size=(3, 5), dilation=(1, 2),
                            border=border,
                            pos_encoding=dict(type='RelativeBiasTable')
                            ).double()
    with torch.no_grad():
        layer.pos_encoding.table.normal_()
    table = layer.pos_encoding.table  # [heads, 3, 5]
    x = torch.randn(1, Hm, Wm, C, dtype=torch.float64)
    y = layer(x)[0].reshape(Hm * Wm, C)

    tokens = x[0].reshape(Hm * Wm, C)
    pos = [(i, j) for i in range(Hm) for j in range(Wm)]
    n_pad = 0
    slots = []  # out-of-map window slots: (query, table entry)
    if border == 'zeros':
        for qi, (i, j) in enumerate(pos):
            for a in (-1, 0, 1):
                for b in (-2, -1, 0, 1, 2):
                    if not (0 <= i + a < Hm and 0 <= j + 2 * b < Wm):
                        slots.append((qi, a + 1, b + 2))
        n_pad = len(slots)
    N = Hm * Wm
    allowed = torch.zeros(N, N + n_pad, dtype=torch.bool)
    bias = torch.zeros(heads, N, N + n_pad, dtype=torch.float64)
    for qi, (i, j) in enumerate(pos):
        for ki, (m, n) in enumerate(pos):
            dy, dx = m - i, n - j
            if abs(dy) <= 1 and dx % 2 == 0 and abs(dx) <= 4:
                allowed[qi, ki] = True
                bias[:, qi, ki] = table[:, dy + 1, dx // 2 + 2]
    for s, (qi, a, b) in enumerate(slots):
        allowed[qi, N + s] = True
        bias[:, qi, N + s] = table[:, a, b]
    qkv_w, qkv_b, proj_w, proj_b = _params(layer)
    # zero-padded slots: a token whose key and value are exactly zero
    hd = layer.head_dims
    qkv = tokens @ qkv_w.t() + qkv_b
    q, k, v = qkv.split(heads * hd, dim=-1)
    k = torch.cat([k, k.new_zeros(n_pad, heads * hd)])
    v = torch.cat([v, v.new_zeros(n_pad, heads * hd)])
    outs = []
    for h in range(heads):
        cols = slice(h * hd, (h + 1) * hd)
        s = q[:, cols] @ k[:, cols].t() / math.sqrt(hd) + bias[h]
        s = s.masked_fill(~allowed, float('-inf'))
        outs.append(torch.softmax(s, -1) @ v[:, cols])
    want = torch.cat(outs, -1) @ proj_w.t() + proj_b
    torch.testing.assert_close(y, want, rtol=1e-10, atol=1e-12)
    g = torch.autograd.grad(y.sum(), table)[0]
    g_ref = torch.autograd.grad(want.sum(), table)[0]
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------- encodings
def test_log_cpb_closed_form_and_sign():
    """``b = 16 σ(W₂ ReLU(W₁ x + c₁))``, ``x = sign(δ) log2(1 + 8|δ|/s) / 3``
    with ``s = radius · step`` per axis; an odd function of δ inside, so a
    random MLP gives ``b(δ) != b(-δ)``."""
    enc = LogCPB(num_heads=3, head_dims=8, rank=2, radius=(1, 2),
                 step=(1, 2), hidden_dims=16).double()
    offsets = torch.tensor([[0, 0], [1, 0], [-1, 0], [2, -4], [-2, 4],
                            [3, 4], [-3, -4], [9, -12]])
    got = enc.pos_bias(offsets)
    s = torch.tensor([1.0 * 1, 2.0 * 2], dtype=torch.float64)
    rows = []
    for d in offsets.double():
        x = torch.sign(d) * torch.log2(1 + 8 * d.abs() / s) / math.log2(8)
        hidden = torch.relu(enc.mlp[0].weight @ x + enc.mlp[0].bias)
        rows.append(16 * torch.sigmoid(enc.mlp[2].weight @ hidden))
    want = torch.stack(rows, dim=1)  # [heads, T]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # b(δ) against b(-δ) for the pairs above
    for a, b in ((1, 2), (3, 4), (5, 6)):
        assert (got[:, a] - got[:, b]).abs().max() > 1e-3


def test_quadratic_full_covariance_closed_form():
    """``b = -(δ-Δ)ᵀ L Lᵀ (δ-Δ) = -‖Lᵀ(δ-Δ)‖²`` with ``L`` the lower
    triangle of a random (non-symmetric) ``chol``: not ``LᵀL``."""
    enc = QuadraticEncoding(num_heads=2, head_dims=4, rank=2, radius=(2, 2),
                            step=(1, 1), mode='full').double()
    with torch.no_grad():
        enc.chol.copy_(torch.randn(2, 2, 2, dtype=torch.float64) * 2)
        enc.centres.copy_(torch.randn(2, 2, dtype=torch.float64))
    offsets = torch.tensor([[a, b] for a in range(-2, 3)
                            for b in range(-2, 3)])
    got = enc.pos_bias(offsets)
    for h in range(2):
        (l00, _), (l10, l11) = enc.chol[h].tolist()
        cy, cx = enc.centres[h].tolist()
        for t, (dy, dx) in enumerate(offsets.tolist()):
            u, w = dy - cy, dx - cx
            # Lᵀ (δ - Δ) with L = [[l00, 0], [l10, l11]]
            a, b = l00 * u + l10 * w, l11 * w
            assert got[h, t].item() == pytest.approx(-(a * a + b * b),
                                                     rel=1e-12, abs=1e-12)
    # a symmetric encoding would not see the difference: make sure L is not
    assert abs(enc.chol[0, 1, 0].item()) > 1e-3


@pytest.mark.parametrize('n,eps,m', [(3, 0.1, 4.0), (9, 0.01, 1.0),
                                     (25, 0.3, 2.5)])
def test_alpha_for_mass_is_exact_when_all_others_are_at_min_distance(
        n, eps, m):
    """With ``n - 1`` other offsets all at squared distance ``m``, the mass
    on the centre at ``α = alpha_for_mass(n, eps, m)`` is exactly ``1-eps``:
    the bound is attained, so α is neither too small nor too large."""
    alpha = alpha_for_mass(n, eps, m)
    scores = torch.tensor([0.0] + [-alpha * m] * (n - 1),
                          dtype=torch.float64)
    mass = torch.softmax(scores, 0)[0].item()
    assert mass == pytest.approx(1 - eps, abs=1e-12)
    # slightly smaller α misses the target, slightly larger exceeds it
    for factor, cmp in ((0.99, lambda a, b: a < b), (1.01,
                                                     lambda a, b: a > b)):
        s = torch.tensor([0.0] + [-alpha * factor * m] * (n - 1),
                         dtype=torch.float64)
        assert cmp(torch.softmax(s, 0)[0].item(), 1 - eps)


@pytest.mark.parametrize('step', [1, 2, 3])
def test_quadratic_init_mass_on_a_dilated_window(step):
    """The encoding's α from ``init_mass``, both ways: on a 1-D window of 3
    taps ``step`` pixels apart, the middle head puts exactly ``init_mass``
    on its centre (its two neighbours are both at distance ``step``, so the
    bound is attained; an α that ignores ``step²`` misses it)."""
    enc = QuadraticEncoding(num_heads=3, head_dims=4, rank=1, radius=(1, ),
                            step=(step, ), init_kernel=3, init_mass=0.9)
    assert enc.centres[:, 0].tolist() == [-step, 0, step]
    offsets = torch.tensor([[-step], [0], [step]])
    attn = enc.pos_bias(offsets).double().softmax(-1)
    assert attn[1, 1].item() == pytest.approx(0.9, abs=1e-5)
    # the border heads: centre at ±step, neighbours at step and 2·step
    assert attn[0, 0].item() >= 0.9 - 1e-6
    assert attn[2, 2].item() >= 0.9 - 1e-6


# ---------------------------------------------------------- table resize
def cubic_resize_matrix(n_in, n_out, A=-0.75):
    """``[n_out, n_in]`` weights of 1-D cubic convolution (Keys, ``A``) with
    corners aligned (``x = u (n_in - 1) / (n_out - 1)``) and edge samples
    repeated: the separable factor of bicubic table resizing."""
    W = torch.zeros(n_out, n_in, dtype=torch.float64)
    for u in range(n_out):
        x = u * (n_in - 1) / (n_out - 1)
        i0 = min(int(math.floor(x)), n_in - 1)
        t = x - i0
        for tap, dist in ((-1, 1 + t), (0, t), (1, 1 - t), (2, 2 - t)):
            if dist <= 1:
                w = ((A + 2) * dist - (A + 3)) * dist * dist + 1
            else:
                w = ((A * dist - 5 * A) * dist + 8 * A) * dist - 4 * A
            W[u, min(max(i0 + tap, 0), n_in - 1)] += w
    return W


@pytest.mark.parametrize('cls,key', [(RelativeBiasTable, 'table'),
                                     (RelativeKeys, 'keys')])
def test_resize_on_load_of_a_linear_ramp(cls, key):
    """A 3x3 table holding ``a·δy + b·δx + c`` loaded into a 7x7 one.
    Centre to centre and corner to corner (``align_corners=True``): new
    steps ``(0, ±3)`` per axis hold the old entries ``(0, ±1)`` exactly, and
    every entry is the bicubic interpolation written out by hand."""
    small = cls(num_heads=2, head_dims=4, rank=2, radius=(1, 1), step=(1, 1))
    big = cls(num_heads=2, head_dims=4, rank=2, radius=(3, 3), step=(1, 1))
    ax = torch.arange(-1, 2, dtype=torch.float64)
    dy, dx = torch.meshgrid(ax, ax, indexing='ij')
    ramp = torch.stack([1.5 * dy - 0.5 * dx + 0.25, -2.0 * dy + dx - 1.0])
    with torch.no_grad():
        t = getattr(small, key)
        t.copy_(ramp[:, None].expand_as(t) if key == 'keys' else ramp)
    big.load_state_dict(small.state_dict())
    new = getattr(big, key).double()
    new = new if key == 'table' else new[:, 0]  # [heads, 7, 7]
    W = cubic_resize_matrix(3, 7)
    want = torch.einsum('ui,hij,vj->huv', W, ramp, W)
    torch.testing.assert_close(new, want, rtol=0, atol=1e-5)
    torch.testing.assert_close(new[:, ::3, ::3], ramp, rtol=0, atol=1e-6)
    # and the ramp's slope survives along the centre row and column
    torch.testing.assert_close(new[:, 3, 6] - new[:, 3, 0],
                               ramp[:, 1, 2] - ramp[:, 1, 0], rtol=0,
                               atol=1e-6)


# ---------------------------------------------------------- small maps
@pytest.mark.parametrize('stride', [1, 2])
def test_small_map_pad_equals_explicitly_zero_padded_map(stride):
    """``small_map='pad'`` on a 3x5 map with a 7x7 window equals the same
    layer on the map zero-padded by hand to 9x9 (no q/k/v bias, so padded
    tokens have zero keys and values, as the border's zero slots), cropped
    to the small map's queries."""
    layer = RelPosAttention(16, 2, kernel_size=7, border='zeros',
                            small_map='pad', qkv_bias=False,
                            query_stride=stride,
                            pos_encoding=dict(type='RelativeBiasTable')
                            ).double()
    with torch.no_grad():
        layer.pos_encoding.table.normal_()
    small = torch.randn(2, 3, 5, 16, dtype=torch.float64)
    y = layer(small)
    big = torch.zeros(2, 9, 9, 16, dtype=torch.float64)
    big[:, :3, :5] = small
    layer.small_map = 'error'  # the 9x9 map fits the window
    want = layer(big)[:, :-(-3 // stride), :-(-5 // stride)]
    assert y.shape == (2, -(-3 // stride), -(-5 // stride), 16)
    torch.testing.assert_close(y, want, rtol=1e-10, atol=1e-12)
