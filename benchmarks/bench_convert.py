"""Benchmark: converting mmpretrain's ResNet-50 to attention.

Measures, in one run on this machine: the time of ``convert_model`` on a
ResNet-50 classifier (target < 10 s on the 2-core dev CPU), whether the
converted model's logits equal the CNN's, and the converted model's time
relative to the CNN for inference (no-grad forward) and a training step
(forward, cross-entropy, backward; optimiser step excluded), in interleaved
rounds: each ratio is taken per round and printed as its median and min-max.
Each model runs in its fastest memory layout (contiguous or channels_last
input, chosen by timing both; printed). ``--check`` exits 1 when a target
(``TARGETS``) is missed or the logits differ.

    python benchmarks/bench_convert.py [--size 224] [--batch 2] \\
        [--rounds 5] [--json work_dirs/bench_convert.json] [--check]
"""
import argparse
import copy
import os.path as osp
import sys
import time

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import (check_targets, fastest_layout, fmt_spread,  # noqa: E402
                     interleaved, ratio_spread, spread, write_json)

#: converted / CNN time, median over rounds, per mode
TARGETS = dict(infer=1.5, train=1.5)
CONVERT_SECONDS = 10.0


def steps(model, x, y, mode):
    """``{layout: fn}``: one inference call or training step per layout."""
    out = {}
    for layout, fmt in (('contiguous', torch.contiguous_format),
                        ('channels_last', torch.channels_last)):
        xl = x.contiguous(memory_format=fmt)
        if mode == 'infer':

            def fn(xl=xl):
                with torch.no_grad():
                    model(xl, mode='tensor')
        else:

            def fn(xl=xl):
                logits = model(xl, mode='tensor')
                torch.nn.functional.cross_entropy(logits, y).backward()

        out[layout] = fn
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--depth', type=int, default=50)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--inner', type=int, default=1,
                   help='calls per model per round (the best counts)')
    p.add_argument('--json', default='work_dirs/bench_convert.json')
    p.add_argument('--check', action='store_true',
                   help='exit 1 when a target is missed')
    args = p.parse_args(argv)
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
    y = torch.randint(0, 1000, (args.batch, ))
    with torch.no_grad():
        ref = model(x, mode='tensor')
        got = converted(x, mode='tensor')
    diff = (ref - got).abs().max().item()
    models = dict(original=model, converted=converted)
    result = dict(
        model=f'mmpretrain ResNet-{args.depth}', input=list(x.shape),
        threads=torch.get_num_threads(), rounds=args.rounds,
        converted_convs=len(report.converted),
        skipped_convs=len(report.skipped), convert_seconds=convert_s,
        max_abs_logit_diff=diff, max_abs_logit=ref.abs().max().item(),
        logits_identical=bool(torch.equal(ref, got)))
    print(f"{result['model']}, input {'x'.join(map(str, x.shape))}, "
          f"{result['threads']} threads; convs converted / skipped: "
          f"{result['converted_convs']} / {result['skipped_convs']}; "
          f'conversion {convert_s:.2f} s (target < {CONVERT_SECONDS:.0f} s)')
    print(f"max |Δ logit| {diff:.2e} (max |logit| "
          f"{result['max_abs_logit']:.2e}), identical: "
          f"{result['logits_identical']}")
    checks = [('conversion seconds', spread([convert_s]), '<=',
               CONVERT_SECONDS),
              ('max |Δ logit| / max |logit|',
               spread([diff / max(result['max_abs_logit'], 1e-30)]), '<=',
               1e-5)]
    for mode in ('infer', 'train'):
        for m in models.values():
            m.train(mode == 'train')
        fns, layouts = {}, {}
        for name, m in models.items():
            cands = steps(m, x, y, mode)
            layout, probe = fastest_layout(cands, rounds=2)
            layouts[name] = dict(chosen=layout, probe_ms={
                k: 1e3 * v for k, v in probe.items()})
            fns[name] = cands[layout]
        times = interleaved(fns, args.rounds, inner=args.inner)
        ratio = ratio_spread(times, 'converted', 'original')
        result[mode] = dict(
            layouts=layouts, ratio=ratio,
            ms={k: {s: 1e3 * v for s, v in spread(t).items()}
                for k, t in times.items()})
        what = ('inference (no_grad forward)' if mode == 'infer' else
                'training step (forward + loss + backward)')
        print(f'\n{what}, {args.rounds} interleaved rounds (best of '
              f'{args.inner} per round)')
        for name in models:
            lay = layouts[name]
            probe = ', '.join(f'{k} {v:.0f} ms'
                              for k, v in lay['probe_ms'].items())
            med = result[mode]['ms'][name]['median']
            print(f'  {name:9s}: median {med:7.0f} ms in {lay["chosen"]} '
                  f'(layout probe: {probe})')
        print(f'  converted / original: {fmt_spread(ratio)} '
              f'(median (min-max) over rounds)')
        checks.append((f'{mode}: converted / original', ratio, '<=',
                       TARGETS[mode]))
    missed = check_targets(checks)
    result['missed_targets'] = missed
    write_json(args.json, result)
    return 1 if args.check and missed else 0


if __name__ == '__main__':
    sys.exit(main())
