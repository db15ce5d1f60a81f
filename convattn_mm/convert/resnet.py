"""ImageNet ResNet weights -> ``SAResNet`` (fine-tuning start point).

``SAResNet`` keeps a ResNet's stem, 1×1 convolutions, BatchNorms and
shortcuts module for module; only each block's 3×3 convolution is a
δ-attention layer (``SAConv``). :func:`resnet_to_saresnet` maps a ResNet
checkpoint (torchvision or mmpretrain layout, read by the converter's
:func:`~convattn_mm.convert.load_cnn_state_dict`, weights-only) onto an
``SAResNet`` built with ``conv_init=True``:

* stem, ``conv1``/``conv3``, every BatchNorm and the shortcuts are copied
  exactly;
* each 3×3 conv (``conv2`` of a bottleneck, both convs of a basic
  block) ``W [C_out, C_in, 3, 3]`` is split by the converter into one
  matrix per offset, ``W_Δ [C_out, C_in]`` (:func:`~convattn_mm.convert.
  proj_weight`, heads in row-major kernel order). With ``conv_init`` the
  ``SAConv``'s head ``h`` attends (mass ``init_mass``) to its offset
  ``Δ_h``, so its output is ``≈ Σ_h P^h V^h x_{q+Δ_h}`` with
  ``V^h [d, C_in]`` (value rows of ``qkv``) and ``P^h [C_out, d]`` (columns
  of ``proj``), ``d = C_out / num_heads``. The heads on one offset get the
  best rank-``n_Δ·d`` approximation of ``W_Δ`` (truncated SVD,
  ``P = U√S``, ``V = √S Vᵀ``); offsets with no head are dropped.

An ``SAResNet`` layer has ``num_heads · d = C_out`` value channels where the
conv has ``9 · C_in`` weights per output: the map is exact only for convs of
that rank, so the report gives each layer's relative error
``‖W − Ŵ‖_F / ‖W‖_F``. The copied parts (about two thirds of a ResNet-50's
weights: stem, 1×1 convs, norms) are exact.
"""
from collections import OrderedDict

import torch

from convattn_mm.models.backbones.sa_resnet import SAConv, SAResNet
from convattn_mm.models.encodings import CONV_INIT_OFFSETS

from .conv import proj_weight


def _strip(state_dict, prefix):
    out = OrderedDict()
    for k, v in state_dict.items():
        if k.startswith(prefix):
            out[k[len(prefix):]] = v
        elif not k.startswith('head.'):
            out[k] = v
    return out


def _resnet_key(sa_key):
    """SAResNet key of a copied tensor -> ResNet key (None: nothing maps)."""
    parts = sa_key.split('.')
    if parts[0] == 'stem':
        if parts[1] not in ('0', '1'):
            return None
        return {'0': 'conv1', '1': 'bn1'}[parts[1]] + '.' + '.'.join(
            parts[2:])
    if parts[0] == 'res_layers':
        return '.'.join([f'layer{int(parts[1]) + 1}', parts[2]] + parts[3:])
    return None


def _split_conv(weight):
    """``W [C_out, C_in, 3, 3]`` -> ``{(dy, dx): W_Δ [C_out, C_in]}`` through
    the converter's per-head projection (row-major kernel order)."""
    cout, cin, kh, kw = weight.shape
    per_head = proj_weight(weight, cin, 1).reshape(cout, kh * kw, cin)
    out = {}
    for h in range(kh * kw):
        dy, dx = h // kw - kh // 2, h % kw - kw // 2
        out[(dy, dx)] = per_head[:, h]
    return out


def resnet_to_saresnet(resnet_state_dict, model, prefix='backbone.'):
    """Map ResNet weights onto ``model`` (an ``SAResNet``).

    Args:
        resnet_state_dict (dict): ResNet weights, mmpretrain/torchvision key
            names, with or without ``prefix`` (``head.*`` is ignored).
        model (SAResNet): built with ``conv_init=True``, a 3×3 window and
            the checkpoint's depth and widths.
        prefix (str): prefix of the backbone keys in ``resnet_state_dict``.

    Returns:
        ``(state_dict, report)``: a full state dict for ``model`` (its own
        values where nothing maps: q/k projections, position encodings),
        and one dict per attention layer (``name``; ``rank``: the largest
        rank of the approximation of one offset's ``W_Δ``, i.e.
        ``min(heads on Δ · d, C_in, C_out)``; ``rel_error``).

    Raises:
        TypeError / ValueError: ``model`` is not a conv-init SAResNet with
        3×3 windows; KeyError: a ResNet tensor is missing; ValueError: a
        shape does not match.
    """
    if not isinstance(model, SAResNet):
        raise TypeError(f'model={type(model).__name__}: expected SAResNet')
    sa_layers = {n: m for n, m in model.named_modules()
                 if isinstance(m, SAConv)}
    for name, m in sa_layers.items():
        if not m.conv_init:
            raise ValueError(
                f'{name}: conv_init=False; build SAResNet(conv_init=True) so '
                f'that each head attends to one 3×3 offset')
        if tuple(m.attn.kernel_size) != (3, 3):
            raise ValueError(f'{name}: kernel_size={m.attn.kernel_size}; '
                             f'only 3 (the conv window) maps onto a ResNet')
    src = _strip(resnet_state_dict, prefix)
    target = model.state_dict()
    out = OrderedDict()
    for key, value in target.items():
        rkey = _resnet_key(key)
        if rkey is None or any(key.startswith(n + '.') for n in sa_layers):
            out[key] = value.clone()
            continue
        if rkey not in src:
            raise KeyError(f'ResNet checkpoint has no {rkey!r} (for '
                           f'{key!r}); is it a ResNet-{model.depth}?')
        if src[rkey].shape != value.shape:
            raise ValueError(f'{rkey}: shape {tuple(src[rkey].shape)} does '
                             f'not match {key} {tuple(value.shape)}')
        out[key] = src[rkey].clone().to(value.dtype)
    report = []
    for name, m in sa_layers.items():
        rkey = _resnet_key(name + '.weight')  # res_layers.i.j.convN
        if rkey not in src:
            raise KeyError(f'ResNet checkpoint has no {rkey!r} (for {name})')
        report.append(_map_attention(name, m.attn, src[rkey].float(), out))
    return out, report


def _map_attention(name, attn, weight, out):
    cout, cin = weight.shape[:2]
    if (cin, cout) != (attn.embed_dims, attn.out_dims):
        raise ValueError(f'{name}: conv {cin}->{cout} does not match the '
                         f'attention {attn.embed_dims}->{attn.out_dims}')
    H, d = attn.num_heads, attn.head_dims
    per_offset = _split_conv(weight)
    heads_at = {}
    for h in range(H):
        heads_at.setdefault(CONV_INIT_OFFSETS[h % len(CONV_INIT_OFFSETS)],
                            []).append(h)
    qkv_w = out[f'{name}.attn.qkv.weight'].clone()  # [3·H·d, C_in]
    proj_w = torch.zeros(cout, H * d)
    approx = torch.zeros_like(weight)
    ranks = []
    for delta, w in per_offset.items():
        heads = heads_at.get(delta, [])
        if not heads:
            continue
        r = min(len(heads) * d, min(w.shape))
        ranks.append(r)
        U, S, Vh = torch.linalg.svd(w, full_matrices=False)
        root = S[:r].sqrt()
        P, V = U[:, :r] * root, root[:, None] * Vh[:r]
        for i, h in enumerate(heads):
            lo, hi = i * d, min((i + 1) * d, r)
            if lo >= hi:
                continue
            qkv_w[2 * H * d + h * d:2 * H * d + h * d + hi - lo] = V[lo:hi]
            proj_w[:, h * d:h * d + hi - lo] = P[:, lo:hi]
        approx[:, :, delta[0] + 1, delta[1] + 1] = P @ V
    out[f'{name}.attn.qkv.weight'] = qkv_w
    if f'{name}.attn.qkv.bias' in out:
        bias = out[f'{name}.attn.qkv.bias'].clone()
        bias[2 * H * d:] = 0
        out[f'{name}.attn.qkv.bias'] = bias
    out[f'{name}.attn.proj.weight'] = proj_w
    out[f'{name}.attn.proj.bias'] = torch.zeros(cout)
    err = (weight - approx).norm() / weight.norm().clamp_min(1e-12)
    return dict(name=name, rank=max(ranks, default=0),
                rel_error=float(err))
