"""One convolution -> one :class:`~convattn_mm.models.layers.ConvAttention`.

Exact construction (docs/design.md section 3; Cordonnier et al. 2020, Theorem 1 made
exact): a conv with kernel ``K`` (per axis, odd), dilation ``d``, stride
``s``, ``groups`` g and weight ``W [C_out, C_in/g, *K]`` becomes attention
with ``H = prod(K)`` heads, head ``h`` owning the offset
``Δ_h = (i_h - (K-1)/2)·d`` (row-major over the kernel grid):

* bias table ``b^h_δ = 0`` at ``δ = Δ_h`` and ``HARD_NEG = -1e4`` elsewhere
  (``exp(-1e4)`` is exactly 0 in float16/32/64, so the weight on ``Δ_h`` is
  exactly 1; a finite value keeps weight decay and optimisers finite where
  ``-inf`` would give NaN);
* no content term (``W_q = W_k = 0``; the projection is skipped);
* ``V^h = I``; ``W_o^h = W_{Δ_h}`` scattered block-diagonally for groups
  (``W_o^h[o, c] = W[o, c - g(o)·C_in/g, Δ_h]`` inside the group of ``o``,
  0 outside);
* ``border='zeros'`` (zero-padded keys and values), ``small_map='pad'``,
  ``query_stride = s`` (only the strided queries are evaluated), conv bias ->
  ``proj.bias``.

Soft (trainable) inits keep ``W_o`` and the content projection but replace
the hard table:

* ``init='quadratic'``: Cordonnier's isotropic quadratic encoding
  ``b^h_δ = -α‖δ - Δ_h‖²`` with centres ``Δ_h`` on the dilated grid and
  ``α = ln((n-1)(1-ε)/ε) / d_min²`` (``n = prod(K)`` offsets, ``ε =
  1 - init_mass``, ``d_min = min(dilation)``), which puts mass ``>= 1-ε``
  on ``Δ_h`` when the content scores are 0.
* ``init='gated'``: :class:`GatedConvAttention`, the same quadratic position
  branch mixed with content attention by a gate ``σ(λ) = gate_init``.

Distance to the conv at initialisation (``x`` the input, ``R = max_o
Σ_{h,c} |W_o^h[o, c]|`` the largest absolute row sum of ``proj.weight``):
every head's weights are a convex combination, so

    |y - conv(x)| <= 2·(1 - m)·R·max|x|,

with ``m`` the smallest weight on ``Δ_h``: ``m >= 1-ε`` for ``'quadratic'``
without content, ``m >= g·(1-ε)`` for ``'gated'`` whatever the content
(:func:`soft_init_bound`).
"""
import math

import torch
import torch.nn as nn

from convattn_mm.models.layers import ConvAttention, GatedConvAttention
from convattn_mm.utils import check_choice

INITS = ('exact', 'gated', 'quadratic')
HARD_NEG = -1e4
TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


class UnsupportedConvError(ValueError):
    """A convolution setting that attention cannot reproduce exactly."""


def check_convertible(conv):
    """Raise :class:`UnsupportedConvError` (a ValueError) naming the setting
    of ``conv`` that cannot be converted exactly, else return its rank."""
    if not isinstance(conv, nn.modules.conv._ConvNd):
        raise TypeError(f'conv={type(conv).__name__}: expected an '
                        f'nn.Conv1d/Conv2d/Conv3d')
    if conv.transposed or isinstance(conv, TRANSPOSED):
        raise UnsupportedConvError(
            f'transposed={conv.transposed} ({type(conv).__name__}): '
            f'transposed convolutions are not supported; convert '
            f'nn.Conv1d/Conv2d/Conv3d')
    rank = conv.weight.dim() - 2
    if rank not in (1, 2, 3):
        raise UnsupportedConvError(f'conv rank {rank}: only 1-3 spatial '
                                   f'axes are supported')
    if conv.padding_mode != 'zeros':
        raise UnsupportedConvError(
            f"padding_mode={conv.padding_mode!r} is not supported; only "
            f"'zeros' converts exactly (border='zeros')")
    K, d = tuple(conv.kernel_size), tuple(conv.dilation)
    if any(k % 2 == 0 for k in K):
        raise UnsupportedConvError(
            f'kernel_size={K}: even kernels have no centre offset and are '
            f'not supported; use odd kernel sizes')
    same = tuple(di * (k - 1) // 2 for k, di in zip(K, d))
    pad = conv.padding
    if isinstance(pad, str):
        if pad == 'valid' and any(same):
            raise UnsupportedConvError(
                f"padding='valid' with kernel_size={K}: only 'same' padding "
                f"(dilation*(kernel_size-1)/2 = {same}) converts exactly")
    elif tuple(pad) != same:
        raise UnsupportedConvError(
            f'padding={tuple(pad)} with kernel_size={K}, dilation={d}: only '
            f"'same' padding dilation*(kernel_size-1)/2 = {same} converts "
            f'exactly')
    return rank


def conv_to_attention(conv, init='exact', qk_dims=None, init_mass=0.99,
                      gate_init=0.95, content_std=0.02, backend='auto'):
    """Convert ``conv`` into a :class:`ConvAttention` with the same output.

    Args:
        conv (nn.Conv1d | nn.Conv2d | nn.Conv3d): odd kernel, 'same' zero
            padding; any stride, dilation, groups, bias, ``C_in != C_out``.
        init (str): ``'exact'`` (bit-for-bit up to summation order),
            ``'quadratic'`` or ``'gated'`` (soft, trainable; see module doc).
        qk_dims (int, optional): content q/k dims per head for the soft
            inits; default ``min(32, C_in)``. Ignored for ``'exact'`` (no
            content term).
        init_mass (float): ``1-ε``, the soft inits' mass on ``Δ_h``.
        gate_init (float): ``'gated'``: initial gate ``σ(λ)``.
        content_std (float): soft inits: std of the q/k weights.
        backend (str): the attention op backend of the new layer.

    Returns:
        ``ConvAttention`` (``GatedConvAttention`` for ``'gated'``) in
        ``layout='channels_first'``, on ``conv``'s device and dtype, in
        ``conv``'s train/eval mode.

    Raises:
        ValueError (:class:`UnsupportedConvError`) naming a setting that
        cannot be converted; ValueError for a bad ``init``.
    """
    check_choice(init, INITS, 'init')
    if not 0 < init_mass < 1:
        raise ValueError(f'init_mass={init_mass!r} must lie in (0, 1)')
    rank = check_convertible(conv)
    K, d = tuple(conv.kernel_size), tuple(conv.dilation)
    cin, cout, groups = conv.in_channels, conv.out_channels, conv.groups
    heads = math.prod(K)
    common = dict(embed_dims=cin, num_heads=heads, out_dims=cout,
                  kernel_size=K, dilation=d, query_stride=tuple(conv.stride),
                  border='zeros', backend=backend, small_map='pad',
                  rank=rank, layout='channels_first')
    if init == 'exact':
        layer = ConvAttention(qk_dims=0,
                              pos_encoding=dict(type='RelativeBiasTable'),
                              **common)
    else:
        if qk_dims is None:
            qk_dims = min(32, cin)
        quad = dict(type='QuadraticEncoding', mode='isotropic',
                    init_kernel=K, init_mass=init_mass)
        if init == 'quadratic':
            layer = ConvAttention(qk_dims=qk_dims, pos_encoding=quad,
                                  **common)
        else:
            layer = GatedConvAttention(qk_dims=qk_dims, pos_encoding=quad,
                                       gate_init=gate_init, **common)
        layer.init_content(content_std)
    weight = conv.weight.detach()
    layer = layer.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        layer.proj.weight.copy_(proj_weight(weight, cin, groups))
        if conv.bias is not None:
            layer.proj.bias.copy_(conv.bias.detach())
        else:
            layer.proj.bias.zero_()
        if init == 'exact':
            table = layer.pos_encoding.table
            flat = table.view(heads, -1)
            flat.fill_(HARD_NEG)
            flat.diagonal().zero_()
    layer.train(conv.training)
    return layer


def proj_weight(weight, in_channels, groups):
    """``W [C_out, C_in/g, *K]`` -> ``proj.weight [C_out, H·C_in]`` with
    ``proj.weight[o, h·C_in + c] = W_o^h[o, c]`` (block-diagonal over
    groups)."""
    cout = weight.shape[0]
    heads = math.prod(weight.shape[2:])
    co, ci = cout // groups, in_channels // groups
    w = weight.reshape(groups, co, ci, heads)
    full = weight.new_zeros(groups, co, groups, ci, heads)
    g = torch.arange(groups, device=weight.device)
    full[g, :, g] = w
    full = full.reshape(cout, in_channels, heads)
    return full.permute(0, 2, 1).reshape(cout, heads * in_channels)


def soft_init_bound(layer, x_absmax, min_mass):
    """``2·(1 - min_mass)·R·max|x|``: the bound on ``|y - conv(x)|`` at
    initialisation (module doc), with ``R`` from ``layer.proj.weight``."""
    R = layer.proj.weight.detach().abs().sum(1).max().item()
    return 2 * (1 - min_mass) * R * float(x_absmax)
