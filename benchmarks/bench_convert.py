"""Benchmark: converting mmpretrain's ResNet-50 to attention.

Measures, in one run on this machine: the time of ``convert_model`` on a
ResNet-50 classifier (target < 10 s on the 2-core dev CPU), and inference
time of the converted model relative to the original (same input, same
threads, interleaved repeats, median). Prints a table and writes JSON.

    python benchmarks/bench_convert.py [--size 224] [--batch 2] \
        [--repeats 3] [--json work_dirs/bench_convert.json]
"""
import argparse
import copy
import json
import os
import os.path as osp
import statistics
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--depth', type=int, default=50)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--json', default='work_dirs/bench_convert.json')
    args = p.parse_args()
    from mmengine.registry import MODELS, init_default_scope

    from convattn_mm.convert import convert_model
    init_default_scope('mmpretrain')
    cfg = dict(type='ImageClassifier',
               backbone=dict(type='ResNet', depth=args.depth),
               neck=dict(type='GlobalAveragePooling'),
               head=dict(type='LinearClsHead', num_classes=1000,
                         in_channels=2048 if args.depth >= 50 else 512))
    torch.manual_seed(0)
    model = MODELS.build(cfg)  # PyTorch default init (no init logs)
    model.eval()
    t0 = time.perf_counter()
    converted, report = convert_model(copy.deepcopy(model))
    convert_s = time.perf_counter() - t0
    converted.eval()
    x = torch.randn(args.batch, 3, args.size, args.size)
    times = {'original': [], 'converted': []}
    with torch.no_grad():
        ref = model(x, mode='tensor')
        got = converted(x, mode='tensor')  # warm-up (kernel build, caches)
        for _ in range(args.repeats):
            for name, m in (('original', model), ('converted', converted)):
                t = time.perf_counter()
                m(x, mode='tensor')
                times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    diff = (ref - got).abs().max().item()
    result = dict(
        model=f'mmpretrain ResNet-{args.depth}', input=list(x.shape),
        threads=torch.get_num_threads(),
        converted_convs=len(report.converted),
        skipped_convs=len(report.skipped), convert_seconds=convert_s,
        infer_seconds_original=med['original'],
        infer_seconds_converted=med['converted'],
        infer_ratio=med['converted'] / med['original'],
        max_abs_logit_diff=diff,
        max_abs_logit=ref.abs().max().item())
    rows = [
        ('model', result['model']),
        ('input', 'x'.join(map(str, result['input']))),
        ('threads', result['threads']),
        ('convs converted / skipped',
         f"{result['converted_convs']} / {result['skipped_convs']}"),
        ('conversion time', f'{convert_s:.2f} s (target < 10 s)'),
        ('inference original (median)', f"{med['original'] * 1e3:.0f} ms"),
        ('inference converted (median)', f"{med['converted'] * 1e3:.0f} ms"),
        ('converted / original', f"{result['infer_ratio']:.2f}"),
        ('max |Δ logit| / max |logit|',
         f"{diff:.2e} / {result['max_abs_logit']:.2e}"),
    ]
    w = max(len(k) for k, _ in rows)
    print('\n'.join(f'{k:<{w}}  {v}' for k, v in rows))
    os.makedirs(osp.dirname(args.json) or '.', exist_ok=True)
    with open(args.json, 'w') as f:
        json.dump(result, f, indent=2)
    print(f'wrote {args.json}')


if __name__ == '__main__':
    main()
