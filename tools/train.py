"""Train a model from a config with mmengine's Runner (mmpretrain's
arguments).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--no-validate] [--load-partial]
        [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

A resumed checkpoint must fit the model exactly
(``convattn_mm.StrictLoadHook``); ``--load-partial`` loads what fits.

Multi-GPU / multi-machine: ``torchrun --nproc_per_node N tools/train.py
CONFIG --launcher pytorch``.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import convattn_mm.registry  # noqa: F401,E402 (activates convattn_mm.compat)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Train a classifier')
    p.add_argument('config', help='train config file path')
    p.add_argument('--work-dir', help='the dir to save logs and models')
    p.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or, without a value, from '
        'the latest checkpoint in the work dir')
    p.add_argument('--amp', action='store_true',
                   help='enable automatic mixed precision training')
    p.add_argument('--no-validate', action='store_true',
                   help='do not validate during training')
    p.add_argument('--load-partial', action='store_true',
                   help='resume from a checkpoint that does not fit the model '
                   '(missing/unexpected keys, wrong shapes) with a warning '
                   'instead of an error')
    p.add_argument('--auto-scale-lr', action='store_true',
                   help='scale the lr with the total batch size')
    p.add_argument('--no-pin-memory', action='store_true',
                   help='pin_memory=False in every data loader')
    p.add_argument('--no-persistent-workers', action='store_true',
                   help='persistent_workers=False in every data loader')
    p.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value (a.b=1, '
        'a.c="[1,2]")')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                   default='none', help='job launcher')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg, args):
    """Apply the command line to ``cfg`` (as mmpretrain's train.py)."""
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True

    def set_loader(key, value):
        for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            loader = cfg.get(name)
            if loader is not None:
                loader[key] = value

    if args.no_pin_memory:
        set_loader('pin_memory', False)
    if args.no_persistent_workers:
        set_loader('persistent_workers', False)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if cfg.get('resume') and not args.load_partial:
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
            dict(type='convattn_mm.StrictLoadHook')
        ]
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = merge_args(Config.fromfile(args.config), args)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return 0


if __name__ == '__main__':
    sys.exit(main())
