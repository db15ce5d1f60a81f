"""Produce the attention gallery of docs/analysis.md into docs/gallery/.

    python tools/make_gallery.py [--demo-checkpoint PTH] [--out docs/gallery]
        [--cnn-epochs 3] [--finetune-epochs 3] [--num-images 32]
        [--train-images N] [--test-images N] [--layers NAME|INDEX ...]

Three analyses (``tools/analyze_attention.py`` on the digits test split):

1. ``demo/``: the default model of the main job
   (``configs/convattn_net/convattnnet-demo_1xb64_digits.py``) with its
   trained checkpoint (default: the newest ``*.pth`` under
   ``work_dirs/demo``; the untrained initialisation, said so in
   ``gallery.json``, when there is none).
2. ``converted-before/``: a small CNN (mmpretrain ``ResNet_CIFAR``-18, base
   width 8) trained on the digits for ``--cnn-epochs``, its 3x3
   convolutions converted to attention with
   ``convattn_mm.convert.convert_model(init='quadratic')`` (each 9-head
   layer starts as its convolution: mass 0.99 on its offset, small content
   term).
3. ``converted-after/``: the same model fine-tuned for
   ``--finetune-epochs`` as attention: which heads moved away from their
   convolution.

``gallery.json`` (updated per part, so ``--skip`` keeps the other part's
entry) lists what was analysed (checkpoints, epochs, accuracy of
each model on the test split) and the per-layer mean measures. Everything in
the folder is written by this command; nothing is drawn by hand.
"""
import argparse
import copy
import glob
import json
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
DEMO_CONFIG = osp.join(ROOT, 'configs', 'convattn_net',
                       'convattnnet-demo_1xb64_digits.py')
DIGITS = osp.join(ROOT, 'configs', '_base_', 'datasets', 'digits.py')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--demo-config', default=DEMO_CONFIG)
    p.add_argument('--demo-checkpoint', default=None,
                   help='default: newest .pth under work_dirs/demo')
    p.add_argument('--out', default=osp.join(ROOT, 'docs', 'gallery'))
    p.add_argument('--work-dir',
                   default=osp.join(ROOT, 'work_dirs', 'gallery'))
    p.add_argument('--cnn-epochs', type=int, default=3)
    p.add_argument('--finetune-epochs', type=int, default=3)
    p.add_argument('--num-images', type=int, default=32)
    p.add_argument('--train-images', type=int, default=None,
                   help='train (and fine-tune) on the first N training '
                   'digits only (default: all 1437)')
    p.add_argument('--test-images', type=int, default=None,
                   help='report accuracy on the first N test digits only '
                   '(default: all 360)')
    p.add_argument('--layers', nargs='+', default=None,
                   help='analyse only these attention layers of each model: '
                   'name patterns or positions (default: all)')
    p.add_argument('--backend', default='auto',
                   help="attention op backend of the converted layers "
                   "('gather': the plain-PyTorch path)")
    p.add_argument('--skip', nargs='*', default=[],
                   choices=['demo', 'converted'])
    return p.parse_args(argv)


def newest_checkpoint(folder):
    last = osp.join(folder, 'last_checkpoint')
    if osp.exists(last):
        path = open(last).read().strip()
        if osp.exists(path):
            return path
    found = sorted(glob.glob(osp.join(folder, '**', '*.pth'),
                             recursive=True), key=osp.getmtime)
    return found[-1] if found else None


def cnn_config(work_dir, epochs, train_images=None, test_images=None):
    """A small CNN classifier on the digits (all 3x3 convs 'same'-padded,
    so every one converts exactly); ``*_images``: use the first N samples
    of that split (None: all)."""
    from mmengine.config import Config
    cfg = Config.fromfile(DIGITS)
    if train_images is not None:
        cfg.train_dataloader.dataset.indices = train_images
    if test_images is not None:
        for split in ('val_dataloader', 'test_dataloader'):
            cfg[split].dataset.indices = test_images
    cfg.merge_from_dict(dict(
        default_scope='mmpretrain',
        work_dir=work_dir,
        model=dict(
            type='ImageClassifier',
            data_preprocessor=copy.deepcopy(cfg.data_preprocessor),
            backbone=dict(type='ResNet_CIFAR', depth=18, base_channels=8,
                          stem_channels=8),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=10, in_channels=64,
                      loss=dict(type='CrossEntropyLoss'))),
        train_cfg=dict(by_epoch=True, max_epochs=epochs, val_interval=epochs),
        val_cfg=dict(), test_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=3e-3,
                                          weight_decay=0.01)),
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=20),
            checkpoint=dict(type='CheckpointHook', interval=epochs,
                            max_keep_ckpts=1)),
        randomness=dict(seed=0),
        log_level='WARNING'))
    return cfg


def train(cfg):
    """Train with mmengine's Runner; returns (checkpoint, test accuracy)."""
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    return newest_checkpoint(cfg.work_dir), float(
        metrics.get('accuracy/top1', float('nan')))


def layer_means(measures):
    return {
        n: {k: round(float(m[k].mean()), 4)
            for k in ('mean_distance', 'content_dependence',
                      'conv_distance')}
        for n, m in measures.items()
    }


def main(argv=None):
    args = parse_args(argv)
    layers = None if args.layers is None else [
        int(x) if x.isdigit() else x for x in args.layers]
    import torch
    from mmengine.config import Config
    from convattn_mm.analysis.report import (_apply_compat, analyze,
                                             build_model, load_images)
    _apply_compat()  # checkpoints written here load with weights_only
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    index = osp.join(args.out, 'gallery.json')
    summary = json.load(open(index)) if osp.exists(index) else {}
    if 'demo' not in args.skip:
        ckpt = args.demo_checkpoint or newest_checkpoint(
            osp.join(ROOT, 'work_dirs', 'demo'))
        model, cfg = build_model(args.demo_config, ckpt)
        samples, display = load_images(cfg, None, args.num_images)
        m = analyze(model, samples, display, osp.join(args.out, 'demo'),
                    title='demo model' + ('' if ckpt else ' (untrained)'),
                    layers=layers)
        summary['demo'] = dict(config=osp.relpath(args.demo_config, ROOT),
                               checkpoint=osp.relpath(ckpt, ROOT) if ckpt
                               else None, trained=bool(ckpt),
                               layers=layer_means(m))
    if 'converted' not in args.skip:
        from convattn_mm.convert import convert_model, save_converted
        cnn_dir = osp.join(args.work_dir, 'cnn')
        cfg = cnn_config(cnn_dir, args.cnn_epochs, args.train_images,
                         args.test_images)
        cnn_ckpt, cnn_acc = train(cfg)
        # convert the trained CNN, save it as a ConvToAttention checkpoint
        cnn, _ = build_model(cfg, cnn_ckpt)
        _, report = convert_model(cnn, init='quadratic',
                                  backend=args.backend)
        conv_ckpt = osp.join(args.work_dir, 'converted_quadratic.pth')
        save_converted(cnn, conv_ckpt)
        ft = copy.deepcopy(cfg)
        ft.model = dict(type='convattn_mm.ConvToAttention',
                        module=copy.deepcopy(cfg.model), init='quadratic',
                        backend=args.backend)
        ft.work_dir = osp.join(args.work_dir, 'finetune')
        ft.load_from = conv_ckpt
        ft.train_cfg = dict(by_epoch=True, max_epochs=args.finetune_epochs,
                            val_interval=args.finetune_epochs)
        ft.optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3,
                                               weight_decay=0.01))
        ft.default_hooks.checkpoint = dict(
            type='CheckpointHook', interval=args.finetune_epochs,
            max_keep_ckpts=1)
        samples, display = load_images(cfg, None, args.num_images)
        before, _ = build_model(Config(copy.deepcopy(ft._cfg_dict.to_dict())),
                                conv_ckpt)
        m0 = analyze(before, samples, display,
                     osp.join(args.out, 'converted-before'),
                     title='converted CNN, before fine-tuning', layers=layers)
        ft_ckpt, ft_acc = train(ft)
        after, _ = build_model(Config(copy.deepcopy(ft._cfg_dict.to_dict())),
                               ft_ckpt)
        m1 = analyze(after, samples, display,
                     osp.join(args.out, 'converted-after'),
                     title='converted CNN, after fine-tuning', layers=layers)
        summary['converted'] = dict(
            cnn='ResNet_CIFAR-18 (base width 8), digits',
            cnn_epochs=args.cnn_epochs, cnn_test_top1=cnn_acc,
            converted_layers=len(report.converted) if hasattr(
                report, 'converted') else None,
            init='quadratic', finetune_epochs=args.finetune_epochs,
            finetuned_test_top1=ft_acc,
            before=layer_means(m0), after=layer_means(m1))
    with open(index, 'w') as f:
        json.dump(summary, f, indent=1)
    print(f'gallery written to {args.out}')


if __name__ == '__main__':
    main()
