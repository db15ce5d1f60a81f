"""Digits: test accuracy (mean ± 95 % CI over seeds) and wall time per epoch
of a CNN baseline and ConvAttnNet variants at about the same parameter count.

    python benchmarks/bench_digits.py [--seeds 5] [--epochs 30]
    python benchmarks/bench_digits.py --quick      # 1 seed, 1 epoch, smoke

Every model is the demo config (``convattnnet-demo_1xb64_digits.py``) with
the backbone changed: ``cnn`` (every stage a depthwise-conv block),
``bias`` (the demo: learned bias table), ``quadratic``, ``conv-init`` and
``global``. Trained with mmengine's Runner, evaluated on the 360 test
digits. No winner is claimed where the intervals overlap.
"""
import argparse
import os.path as osp
import sys
import tempfile
import time

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import mean_ci, print_table, write_json  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs', 'convattn_net',
                'convattnnet-demo_1xb64_digits.py')
VARIANTS = {
    # the conv mixer has fewer parameters than attention: a wider MLP
    # brings the CNN to the same budget (~270 k)
    'cnn': dict(arch=dict(embed_dims=[32, 48, 64, 96], depths=[1, 1, 2, 1],
                          num_heads=[2, 4, 4, 4], mixers=['conv'] * 4,
                          mlp_ratio=3.5)),
    'bias': dict(),
    'quadratic': dict(pos_encodings=dict(type='QuadraticEncoding')),
    'conv-init': dict(mixers=['conv-init'] * 4),
    'global': dict(mixers=['conv', 'global', 'global', 'global']),
}


def run_one(name, seed, epochs, quick):
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(DEMO)
    cfg.model.backbone.update(VARIANTS[name])
    cfg.randomness = dict(seed=seed)
    cfg.train_cfg.max_epochs = epochs
    cfg.train_cfg.val_interval = epochs
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        interval=-1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1000)
    cfg.log_level = 'WARNING'
    if quick:
        cfg.train_dataloader.dataset.indices = 128
        cfg.val_dataloader.dataset.indices = 120
        cfg.test_dataloader = cfg.val_dataloader
    with tempfile.TemporaryDirectory() as work:
        cfg.work_dir = work
        runner = Runner.from_cfg(cfg)
        params = sum(p.numel() for p in runner.model.parameters())
        t = time.perf_counter()
        runner.train()
        per_epoch = (time.perf_counter() - t) / epochs
        acc = float(runner.test()['accuracy/top1'])
    return acc, per_epoch, params


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--seeds', type=int, default=5)
    p.add_argument('--epochs', type=int, default=30)
    p.add_argument('--quick', action='store_true')
    p.add_argument('--json', default=osp.join(ROOT, 'work_dirs',
                                              'bench_digits.json'))
    args = p.parse_args(argv)
    seeds, epochs = (1, 1) if args.quick else (args.seeds, args.epochs)
    results, rows = {}, []
    for name in VARIANTS:
        accs, times = [], []
        for seed in range(seeds):
            acc, t, params = run_one(name, seed, epochs, args.quick)
            accs.append(acc)
            times.append(t)
        m, ci = mean_ci(accs)
        tm, _ = mean_ci(times)
        results[name] = dict(params=params, accuracy=accs, mean=m, ci95=ci,
                             sec_per_epoch=times)
        rows.append([name, f'{params / 1e3:.0f} k', f'{m:.2f} ± {ci:.2f}',
                     f'{tm:.1f}'])
    base = results['cnn']['sec_per_epoch']
    for r, name in zip(rows, VARIANTS):
        r.append(f'{mean_ci(results[name]["sec_per_epoch"])[0] / mean_ci(base)[0]:.2f}')
    print(f'\ndigits, {seeds} seed(s), {epochs} epoch(s)'
          f'{" (QUICK smoke run: numbers meaningless)" if args.quick else ""}')
    print_table(['model', 'params', 'test acc % (95% CI)', 's/epoch',
                 'time vs cnn'], rows)
    write_json(args.json, dict(seeds=seeds, epochs=epochs, quick=args.quick,
                               results=results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
