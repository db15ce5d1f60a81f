"""FLOPs and parameters of a config's model (mmengine's
``get_model_complexity_info``), with neighbourhood attention counted right.

    python tools/get_flops.py CONFIG [--shape 224 224] [--cfg-options ...]

mmengine's analyser traces the model; the attention core of
:class:`RelPosAttention` runs in a custom kernel it cannot see (or, on the
gather path, as generic ops). This tool counts that core explicitly: per
call, ``B · heads · N_q · K_w · (D_qk + D_v)`` multiply-adds (scores
``qᵀk`` and the weighted sum of values) with ``K_w`` the keys per query of
the layer's window (``K²`` for a ``K×K`` window, ``N`` only for global
attention), and adds it to the analyser's count of everything else
(projections, MLPs, convs). FLOPs here are multiply-adds, as mmengine's
(fvcore) convention.
"""
import argparse
import sys

import torch


def attention_flops(model, inputs):
    """Multiply-adds of every :class:`RelPosAttention` core in one forward,
    ``{layer name: count}``."""
    from convattn_mm.models.layers import RelPosAttention
    counts, handles = {}, []

    def hook(name):

        def fn(layer, args, out):
            x = args[0]
            spec, _ = layer.window(tuple(x.shape[1:-1]))
            nq = 1
            for n in spec.out_shape:
                nq *= n
            d = layer.head_dims
            counts[name] = counts.get(name, 0) + (
                x.shape[0] * layer.num_heads * nq * spec.window_size * 2 * d)

        return fn

    for name, m in model.named_modules():
        if isinstance(m, RelPosAttention):
            handles.append(m.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for h in handles:
            h.remove()
    return counts


def complexity(model, shape, in_channels=3):
    """``dict(flops, params, attention_flops, other_flops)`` of ``model``
    (a module taking ``[1, C, H, W]``) at input ``shape`` (H, W)."""
    from mmengine.analysis import FlopAnalyzer, parameter_count
    inputs = torch.randn(1, in_channels, *shape)
    model.eval()
    analyzer = FlopAnalyzer(model, inputs)
    # the fused attention kernel is a Python autograd op: counted below
    analyzer.set_op_handle('prim::PythonOp._FusedNA', None)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    other = analyzer.total()
    attn = sum(attention_flops(model, inputs).values())
    return dict(flops=other + attn, attention_flops=attn, other_flops=other,
                params=parameter_count(model)[''])


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description='Count FLOPs and parameters')
    p.add_argument('config')
    p.add_argument('--shape', type=int, nargs='+', default=[224, 224])
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = MODELS.build(cfg.model)
    model.eval()
    if hasattr(model, 'extract_feat'):
        model.forward = model.extract_feat
    shape = tuple(args.shape) * (2 // len(args.shape))
    r = complexity(model, shape)
    print(f'config:          {args.config}')
    print(f'input shape:     {shape}')
    print(f'params:          {r["params"] / 1e6:.2f} M')
    print(f'FLOPs:           {r["flops"] / 1e9:.3f} G (multiply-adds)')
    print(f'  attention:     {r["attention_flops"] / 1e9:.3f} G '
          f'(K_w keys per query)')
    print(f'  everything else: {r["other_flops"] / 1e9:.3f} G')
    return 0


if __name__ == '__main__':
    sys.exit(main())
