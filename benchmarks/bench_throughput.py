"""Training throughput (images/s, forward + backward) at 224×224 of
ConvAttnNet-T against mmpretrain's Swin-T and ConvNeXt-T, in one run.

    python benchmarks/bench_throughput.py [--batch 16] [--iters 5]
    python benchmarks/bench_throughput.py --quick    # smoke run

Backbone + global pooling + a 1000-way linear head, cross-entropy, SGD
step excluded (forward + backward only); ``--warmup`` untimed iterations
first. Ratios are to Swin-T measured in the same process. GFLOPs (one
image, multiply-adds) come from ``tools/get_flops.py``'s counter, the same
for every model.
"""
import argparse
import os.path as osp
import sys
import time

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import print_table, write_json  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools'))
from get_flops import complexity  # noqa: E402


def models():
    from mmpretrain.models.backbones import ConvNeXt, SwinTransformer

    from convattn_mm.models.backbones import ConvAttnNet
    return {
        'Swin-T (mmpretrain)': (lambda: SwinTransformer('tiny'), 768),
        'ConvNeXt-T (mmpretrain)': (lambda: ConvNeXt('tiny'), 768),
        'ConvAttnNet-T': (lambda: ConvAttnNet('tiny'), 512),
    }


def measure(backbone, channels, batch, size, iters, warmup):
    head = torch.nn.Linear(channels, 1000)
    backbone.train()
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 1000, (batch, ))

    def step():
        feats = backbone(x)[-1]
        if feats.dim() == 4:
            feats = feats.mean((2, 3))
        loss = torch.nn.functional.cross_entropy(head(feats), y)
        loss.backward()

    for _ in range(warmup):
        step()
    t = time.perf_counter()
    for _ in range(iters):
        step()
    sec = time.perf_counter() - t
    params = sum(p.numel() for p in backbone.parameters())
    return batch * iters / sec, params


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--iters', type=int, default=5)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--quick', action='store_true')
    p.add_argument('--json', default=osp.join(ROOT, 'work_dirs',
                                              'bench_throughput.json'))
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.iters, args.warmup = 2, 1, 0
    results, rows = {}, []
    for name, (build, ch) in models().items():
        torch.manual_seed(0)
        backbone = build()
        ips, params = measure(backbone, ch, args.batch, args.size, args.iters,
                              args.warmup)
        flops = complexity(backbone, (args.size, args.size))['flops']
        results[name] = dict(images_per_s=ips, params=params, gflops=flops /
                             1e9)
    base = results['Swin-T (mmpretrain)']['images_per_s']
    for name, r in results.items():
        r['ratio_vs_swin_t'] = r['images_per_s'] / base
        rows.append([name, f'{r["params"] / 1e6:.1f} M',
                     f'{r["gflops"]:.2f}', f'{r["images_per_s"]:.2f}',
                     f'{r["ratio_vs_swin_t"]:.2f}'])
    print(f'\nfwd+bwd at {args.size}x{args.size}, batch {args.batch}, '
          f'{args.iters} timed iteration(s), {torch.get_num_threads()} '
          f'thread(s){" (QUICK smoke run)" if args.quick else ""}')
    print_table(['model', 'backbone params', 'GFLOPs', 'images/s',
                 'vs Swin-T'], rows)
    write_json(args.json, dict(args=vars(args), results=results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
