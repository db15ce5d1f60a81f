"""mmpose ``TCN`` (VideoPose3D lifter) -> :class:`TCNAttnNet`, the same
network with δ-attention in place of its temporal convolutions.

Each dilated, unpadded convolution becomes the exact attention form of the
'same'-padded convolution of its weights (:func:`conv_to_attention`,
``init='exact'``) cropped to the valid frames; batch norms, 1x1
convolutions and the sliced residuals carry over unchanged
(``convattn_mm/convert/tcn_attn.py``). Both of the TCN's forms
convert: ``use_stride_conv=True`` (strided kernels, one output frame) has
the same weights as the dilated form.

:func:`convert_lifter_state_dict` maps a whole ``PoseLifter`` checkpoint
(``backbone.*`` converted, the head and the rest kept) and
``tools/convert_tcn.py`` wraps it for the command line.
"""
from convattn_mm.utils import check_choice

from .tcn_attn import TCNAttnNet, temporal_conv_attention

TCN_TYPES = ('TCN', 'mmpose.TCN')


def tcn_settings(tcn_cfg):
    """The :class:`TCNAttnNet` arguments of a TCN backbone config (dict).

    Raises:
        ValueError naming a TCN setting with no attention counterpart.
    """
    check_choice(tcn_cfg.get('type'), TCN_TYPES, 'backbone.type')
    conv = dict(tcn_cfg.get('conv_cfg') or dict(type='Conv1d'))
    norm = dict(tcn_cfg.get('norm_cfg') or dict(type='BN1d'))
    if conv.get('type') != 'Conv1d':
        raise ValueError(f'conv_cfg={conv}: only Conv1d TCNs convert')
    if norm.get('type') not in ('BN1d', 'BN'):
        raise ValueError(f'norm_cfg={norm}: only BN1d TCNs convert')
    return dict(
        in_channels=tcn_cfg['in_channels'],
        stem_channels=tcn_cfg.get('stem_channels', 1024),
        num_blocks=tcn_cfg.get('num_blocks', 2),
        kernel_sizes=tuple(tcn_cfg.get('kernel_sizes', (3, 3, 3))),
        dropout=tcn_cfg.get('dropout', 0.25),
        causal=tcn_cfg.get('causal', False),
        residual=tcn_cfg.get('residual', True))


def _bn(prefix, state, out_prefix):
    keys = ('weight', 'bias', 'running_mean', 'running_var',
            'num_batches_tracked')
    return {f'{out_prefix}.{k}': state[f'{prefix}.{k}'] for k in keys
            if f'{prefix}.{k}' in state}


def tcn_state_to_attention(state, settings, conv_init='exact', qk_dims=None):
    """A TCN backbone ``state_dict`` (keys without the ``backbone.``
    prefix) -> the matching :class:`TCNAttnNet` ``state_dict``.

    The attention layers come from :func:`conv_to_attention` on each
    convolution's weight (``init=conv_init``).
    """
    ks, stem = settings['kernel_sizes'], settings['stem_channels']
    out = {}

    def attn(name, weight, cin, k, d):
        if weight.shape != (stem, cin, k):
            raise ValueError(f'{name}: weight shape {tuple(weight.shape)}, '
                             f'expected {(stem, cin, k)}')
        layer = temporal_conv_attention(cin, stem, k, d, conv_init, qk_dims,
                                        weight=weight.float())
        return {f'{name}.attn.{k_}': v.to(weight.dtype)
                for k_, v in layer.state_dict().items()}

    conv_bias = [k for k in state if k.endswith('conv.bias')]
    if conv_bias:
        raise ValueError(f'{conv_bias[0]}: TCN convolutions with a bias '
                         f'(no norm layer) are not supported')
    out.update(attn('expand', state['expand_conv.conv.weight'],
                    settings['in_channels'], ks[0], 1))
    out.update(_bn('expand_conv.bn', state, 'expand_bn'))
    dilation = ks[0]
    for i, k in enumerate(ks[1:]):
        src, dst = f'tcn_blocks.{i}', f'blocks.{i}'
        out.update(attn(f'{dst}.attn', state[f'{src}.conv1.0.conv.weight'],
                        stem, k, dilation))
        out.update(_bn(f'{src}.conv1.0.bn', state, f'{dst}.bn1'))
        out[f'{dst}.conv2.weight'] = state[f'{src}.conv2.0.conv.weight']
        out.update(_bn(f'{src}.conv2.0.bn', state, f'{dst}.bn2'))
        if f'{src}.short_cut.weight' in state:
            raise ValueError(f'{src}.short_cut: blocks that change width '
                             f'are not supported')
        dilation *= k
    return out


def tcn_to_attention(tcn, conv_init='exact', qk_dims=None):
    """Convert an mmpose ``TCN`` module into a :class:`TCNAttnNet` with
    the same outputs (``conv_init='exact'``), in ``tcn``'s train/eval
    mode and device.

    Example:
        >>> from mmpose.models.backbones import TCN
        >>> tcn = TCN(34, stem_channels=64).eval()
        >>> net = tcn_to_attention(tcn).eval()
        >>> x = torch.randn(2, 34, 27)
        >>> torch.allclose(net(x)[-1], tcn(x)[-1], atol=1e-5)
        True
    """
    settings = tcn_settings(dict(
        type='TCN', in_channels=tcn.in_channels,
        stem_channels=tcn.stem_channels, num_blocks=tcn.num_blocks,
        kernel_sizes=tcn.kernel_sizes,
        dropout=tcn.dropout.p if tcn.dropout is not None else 0.0,
        causal=tcn.causal, residual=tcn.residual))
    net = TCNAttnNet(**settings, conv_init=conv_init, qk_dims=qk_dims)
    state = {k: v.detach().cpu() for k, v in tcn.state_dict().items()}
    net.load_state_dict(tcn_state_to_attention(state, settings, conv_init,
                                               qk_dims))
    device = next(tcn.parameters()).device
    return net.to(device).train(tcn.training)


def convert_lifter_state_dict(state_dict, backbone_cfg, conv_init='exact',
                              qk_dims=None):
    """A ``PoseLifter`` state dict with a TCN backbone -> the same with a
    :class:`TCNAttnNet` backbone (the head and the rest unchanged).

    Returns:
        (state_dict, backbone config of the new model).
    """
    settings = tcn_settings(backbone_cfg)
    prefix = 'backbone.'
    backbone = {k[len(prefix):]: v for k, v in state_dict.items()
                if k.startswith(prefix)}
    if not backbone:
        raise ValueError('the state dict has no backbone.* keys')
    out = {k: v for k, v in state_dict.items() if not k.startswith(prefix)}
    converted = tcn_state_to_attention(backbone, settings, conv_init, qk_dims)
    out.update({prefix + k: v for k, v in converted.items()})
    cfg = dict(type='convattn_mm.TCNAttnNet', conv_init=conv_init, **settings)
    if qk_dims is not None:
        cfg['qk_dims'] = qk_dims
    return out, cfg


def relative_error(a, b):
    """``max|a - b| / max|b|`` of two tensors."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


__all__ = ['tcn_settings', 'tcn_state_to_attention', 'tcn_to_attention',
           'convert_lifter_state_dict', 'relative_error', 'TCN_TYPES']
