"""Evaluate a checkpoint on a config's test set (mmpretrain's arguments).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--amp] [--load-partial] [--cfg-options k=v ...]
        [--launcher none|pytorch|slurm|mpi]

The checkpoint must fit the model exactly (``convattn_mm.StrictLoadHook``):
missing or unexpected keys and wrong shapes are an error naming the file
and the keys. ``--load-partial`` loads what fits (mmengine's default, which
only warns).
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import convattn_mm.registry  # noqa: F401,E402 (activates convattn_mm.compat)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Test a classifier')
    p.add_argument('config', help='test config file path')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--work-dir', help='the dir to save logs and metrics')
    p.add_argument('--out', help='dump the metrics to this JSON/pickle file')
    p.add_argument('--amp', action='store_true',
                   help='enable automatic mixed precision inference')
    p.add_argument('--load-partial', action='store_true',
                   help='load a checkpoint that does not fit the model '
                   '(missing/unexpected keys, wrong shapes) with a warning '
                   'instead of an error')
    p.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                   default='none', help='job launcher')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if not args.load_partial:
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
            dict(type='convattn_mm.StrictLoadHook')
        ]
    if args.amp:
        cfg.test_cfg.fp16 = True
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    if args.out:
        from mmengine.fileio import dump
        dump({k: float(v) for k, v in metrics.items()}, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
