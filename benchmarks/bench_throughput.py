"""Throughput (images/s) at 224×224 of ConvAttnNet-T against mmpretrain's
Swin-T and ConvNeXt-T, training (forward + backward) and inference (no-grad
forward), in one run.

    python benchmarks/bench_throughput.py [--batch 16] [--rounds 3] [--check]
    python benchmarks/bench_throughput.py --quick    # smoke run

Backbone + global pooling + a 1000-way linear head; the training step is
forward, cross-entropy and backward (optimiser step excluded). The models
run in interleaved rounds (one step of each per round), and each ratio to
Swin-T is taken per round and printed as its median and min-max. Each model
runs in its fastest input layout (contiguous or channels_last, chosen by
timing both; printed). GFLOPs (one image, multiply-adds) come from
``tools/get_flops.py``'s counter, the same for every model. ``--check``
exits 1 when ConvAttnNet-T misses a target ratio (``TARGETS``).
"""
import argparse
import os.path as osp
import statistics
import sys

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import (check_targets, fastest_layout, fmt_spread,  # noqa: E402
                     interleaved, print_table, spread, write_json)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools'))
from get_flops import complexity  # noqa: E402

SWIN, OURS = 'Swin-T (mmpretrain)', 'ConvAttnNet-T'
#: ConvAttnNet-T images/s / Swin-T images/s, median over rounds, per mode
TARGETS = dict(train=1.3, infer=1.3)
MODES = ('train', 'infer')


def models():
    from mmpretrain.models.backbones import ConvNeXt, SwinTransformer

    from convattn_mm.models.backbones import ConvAttnNet
    return {
        SWIN: (lambda: SwinTransformer('tiny'), 768),
        'ConvNeXt-T (mmpretrain)': (lambda: ConvNeXt('tiny'), 768),
        OURS: (lambda: ConvAttnNet('tiny'), 512),
    }


def steps(backbone, head, x, y, mode):
    """``{layout: fn}``: one training step or inference call per layout."""

    def logits(inp):
        feats = backbone(inp)[-1]
        if feats.dim() == 4:
            feats = feats.mean((2, 3))
        return head(feats)

    out = {}
    for layout, fmt in (('contiguous', torch.contiguous_format),
                        ('channels_last', torch.channels_last)):
        xl = x.contiguous(memory_format=fmt)
        if mode == 'train':

            def fn(xl=xl):
                torch.nn.functional.cross_entropy(logits(xl), y).backward()
        else:

            def fn(xl=xl):
                with torch.no_grad():
                    logits(xl)

        out[layout] = fn
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--quick', action='store_true')
    p.add_argument('--check', action='store_true',
                   help='exit 1 when a target ratio is missed')
    p.add_argument('--json', default=osp.join(ROOT, 'work_dirs',
                                              'bench_throughput.json'))
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.rounds, args.warmup = 2, 1, 0
    torch.manual_seed(0)
    built = {}
    for name, (build, ch) in models().items():
        torch.manual_seed(0)
        backbone = build()
        flops = complexity(backbone, (args.size, args.size))['flops']
        params = sum(p.numel() for p in backbone.parameters())
        built[name] = (backbone, torch.nn.Linear(ch, 1000), params, flops)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 1000, (args.batch, ))
    results = {name: dict(params=b[2], gflops=b[3] / 1e9)
               for name, b in built.items()}
    checks = []
    for mode in MODES:
        fns = {}
        for name, (backbone, head, _, _) in built.items():
            backbone.train(mode == 'train')
            cands = steps(backbone, head, x, y, mode)
            layout, probe = fastest_layout(cands, rounds=1)
            fns[name] = cands[layout]
            results[name][mode] = dict(layout=layout, probe_s=probe)
        times = interleaved(fns, args.rounds, warmup=args.warmup)
        for name in built:
            ips = [args.batch / t for t in times[name]]
            rel = [a / b for a, b in zip(ips, (args.batch / t
                                               for t in times[SWIN]))]
            results[name][mode].update(images_per_s=spread(ips),
                                       ratio_vs_swin_t=spread(rel))
        checks.append((f'{mode}: {OURS} / {SWIN} images/s',
                       results[OURS][mode]['ratio_vs_swin_t'], '>=',
                       TARGETS[mode]))
    for mode in MODES:
        what = ('training (fwd+bwd)' if mode == 'train' else
                'inference (no_grad forward)')
        print(f'\n{what} at {args.size}x{args.size}, batch {args.batch}, '
              f'{args.rounds} interleaved round(s), '
              f'{torch.get_num_threads()} thread(s)'
              f'{" (QUICK smoke run)" if args.quick else ""}; ratios: '
              f'median (min-max) over rounds')
        rows = []
        for name, r in results.items():
            m = r[mode]
            rows.append([name, f'{r["params"] / 1e6:.1f} M',
                         f'{r["gflops"]:.2f}', m['layout'],
                         f'{m["images_per_s"]["median"]:.2f}',
                         fmt_spread(m['ratio_vs_swin_t'])])
        print_table(['model', 'backbone params', 'GFLOPs', 'layout',
                     'images/s', 'vs Swin-T'], rows)
    missed = check_targets(checks)
    for r in results.values():
        for mode in MODES:
            r[mode]['probe_s'] = {k: float(v) for k, v in
                                  r[mode]['probe_s'].items()}
    write_json(args.json, dict(args=vars(args), results=results,
                               missed_targets=missed))
    return 1 if args.check and missed else 0


if __name__ == '__main__':
    sys.exit(main())
