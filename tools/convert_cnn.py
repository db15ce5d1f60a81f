"""Convert a trained CNN (an mmengine config + checkpoint) to attention.

    python tools/convert_cnn.py CONFIG CHECKPOINT --out-dir DIR \
        [--init exact|quadratic|gated] [--select PATTERN ...]

Writes into DIR:

* ``<config-name>_convattn-<init>.py``: the original config with
  ``model = dict(type='convattn_mm.ConvToAttention', module=<original
  model>, init=..., ...)`` and ``load_from`` set to the converted
  checkpoint: train or test it like any mmengine config;
* ``<config-name>_convattn-<init>.pth``: the converted weights
  (``{'meta', 'state_dict'}``, loads with ``weights_only=True``).

Then it checks, on scikit-learn's digits (real images, resized to the
config's test size and replicated to the input channels, through the model's
data preprocessor), that the converted model's logits match the original's
(``max|Δ| <= tol·max|logit|``; exit status 1 if not), and that the written
config rebuilds a model that loads the checkpoint strictly and gives the same
logits. CHECKPOINT may be an mmengine/mmpretrain checkpoint, a bare state
dict, or a torchvision ResNet file (keys mapped onto mmpretrain's
ImageClassifier); see convattn_mm/convert/checkpoint.py.
"""
import argparse
import copy
import os
import os.path as osp
import sys
import time

import numpy as np
import torch


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Convert the convolutions of a trained CNN into '
        'relative-position attention (convattn_mm).')
    p.add_argument('config', help='mmengine config of the CNN')
    p.add_argument('checkpoint', help='its checkpoint')
    p.add_argument('--out-dir', required=True, help='output folder')
    p.add_argument('--init', default='exact',
                   choices=['exact', 'quadratic', 'gated'])
    p.add_argument('--select', nargs='+', default=None,
                   help='module-name patterns (fnmatch) of the convs to '
                   'convert; default: every conv with kernel > 1 that '
                   'converts exactly')
    p.add_argument('--qk-dims', type=int, default=None,
                   help='soft inits: content q/k dims per head')
    p.add_argument('--init-mass', type=float, default=0.99,
                   help='soft inits: attention mass on the conv offset')
    p.add_argument('--gate-init', type=float, default=0.95,
                   help="'gated': initial gate towards the convolution")
    p.add_argument('--layout', default='auto',
                   choices=['auto', 'mmengine', 'state_dict', 'torchvision'],
                   help='checkpoint key layout')
    p.add_argument('--trust-checkpoint', action='store_true',
                   help='load with weights_only=False (trusted files only)')
    p.add_argument('--num-images', type=int, default=8,
                   help='digits images used to check the logits')
    p.add_argument('--image-size', type=int, default=None,
                   help='check images size (default: from the test pipeline,'
                   ' else 224)')
    p.add_argument('--tol', type=float, default=None,
                   help='relative logit tolerance (default 1e-5 for exact; '
                   'soft inits are reported, not checked, unless given)')
    args = p.parse_args(argv)
    if args.num_images < 1:
        p.error(f'--num-images={args.num_images}: must be >= 1')
    return args


def _log(msg):
    print(msg, flush=True)


def input_size(cfg, default=224):
    """The test-time input size from the config's test pipeline."""
    pipes = []
    if cfg.get('test_pipeline'):
        pipes.append(cfg.test_pipeline)
    try:
        pipes.append(cfg.test_dataloader.dataset.pipeline)
    except AttributeError:
        pass
    for pipe in pipes:
        size = None
        for t in pipe or []:
            kind = str(t.get('type', ''))
            if kind.endswith('CenterCrop') and 'crop_size' in t:
                size = t['crop_size']
            elif kind.endswith('Resize') and size is None:
                size = t.get('scale')
        if size is not None:
            return int(size[0] if isinstance(size, (list, tuple)) else size)
    return default


def digits_batch(num, size, channels):
    """``num`` scikit-learn digits as uint8 ``[C, size, size]`` tensors."""
    from sklearn.datasets import load_digits
    images = load_digits().images[:num]  # [N, 8, 8] in 0..16
    x = torch.from_numpy(images.astype(np.float32) * (255.0 / 16.0))
    x = torch.nn.functional.interpolate(x[:, None], size=(size, size),
                                        mode='bilinear', align_corners=False)
    x = x.clamp(0, 255).round().to(torch.uint8)
    return [img.expand(channels, -1, -1).clone() for img in x]


def build_model(cfg_model, cfg):
    from mmengine.registry import MODELS
    model_cfg = copy.deepcopy(cfg_model)
    if cfg.get('data_preprocessor') is not None and isinstance(
            model_cfg, dict):
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    return MODELS.build(model_cfg)


@torch.no_grad()
def logits(model, images):
    from mmengine.model import BaseModel
    if isinstance(model, BaseModel):
        data = model.data_preprocessor(dict(inputs=list(images)), False)
        out = model(data['inputs'], mode='tensor')
    else:
        out = model(torch.stack(images).float() / 255.0)
    if isinstance(out, (list, tuple)):
        out = out[-1]
    return out.float()


def _table(rows):
    w = max(len(k) for k, _ in rows)
    lines = ['=' * (w + 40)]
    lines += [f'{k:<{w}}  {v}' for k, v in rows]
    lines.append('=' * (w + 40))
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint

    from convattn_mm.convert import (convert_model, load_cnn_state_dict,
                                     save_converted)

    cfg = Config.fromfile(args.config)
    if cfg.get('default_scope'):
        init_default_scope(cfg.default_scope)
    os.makedirs(args.out_dir, exist_ok=True)
    name = osp.splitext(osp.basename(args.config))[0]
    stem = osp.join(args.out_dir, f'{name}_convattn-{args.init}')
    out_cfg, out_ckpt = stem + '.py', stem + '.pth'

    _log(f'building {cfg.model.get("type")} from {args.config}')
    model = build_model(cfg.model, cfg)
    sd, layout = load_cnn_state_dict(args.checkpoint, args.layout,
                                     args.trust_checkpoint)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise KeyError(f'checkpoint {args.checkpoint!r} (layout {layout!r}) '
                       f'does not fit the config\'s model: missing keys '
                       f'{missing[:6]}, unexpected keys {unexpected[:6]}')
    shapes = [f'{k}: {tuple(sd[k].shape)} vs {tuple(v.shape)}'
              for k, v in own.items() if sd[k].shape != v.shape]
    if shapes:
        raise ValueError(f'checkpoint {args.checkpoint!r} has other tensor '
                         f'shapes than the config\'s model (checkpoint vs '
                         f'model): {shapes[:4]}')
    model.load_state_dict(sd, strict=True)
    model.eval()
    _log(f'loaded {args.checkpoint} (layout {layout}, {len(sd)} tensors)')

    conv_args = dict(init=args.init, select=args.select)
    if args.init != 'exact':
        conv_args.update(init_mass=args.init_mass)
        if args.qk_dims is not None:
            conv_args['qk_dims'] = args.qk_dims
        if args.init == 'gated':
            conv_args['gate_init'] = args.gate_init
    converted = copy.deepcopy(model)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    converted, report = convert_model(converted, progress=_log, **conv_args)
    seconds = time.perf_counter() - t0
    converted.eval()
    if not report.converted:
        _log(report.table())
        _log('nothing was converted (see the reasons above)')
        return 1
    save_converted(converted, out_ckpt,
                   meta=dict(convattn_mm=dict(source_config=args.config,
                                              source_checkpoint=args.checkpoint,
                                              source_layout=layout,
                                              **conv_args)))

    new_cfg = Config(cfg.to_dict(), filename=args.config)
    new_cfg.model = dict(type='convattn_mm.ConvToAttention',
                         module=cfg.to_dict()['model'],
                         **{k: v for k, v in conv_args.items()
                            if v is not None})
    new_cfg.load_from = osp.abspath(out_ckpt)
    new_cfg.dump(out_cfg)
    _log(f'wrote {out_cfg}\nwrote {out_ckpt}')

    # ---- verification on real images
    channels = cfg.model.get('backbone', {}).get('in_channels', 3)
    size = args.image_size or input_size(cfg)
    images = digits_batch(args.num_images, size, channels)
    ref = logits(model, images)
    got = logits(converted, images)
    diff = (ref - got).abs().max().item()
    scale = ref.abs().max().item()
    agree = (ref.argmax(-1) == got.argmax(-1)).float().mean().item()
    rebuilt = build_model(Config.fromfile(out_cfg).model, new_cfg)
    load_checkpoint(rebuilt, out_ckpt, map_location='cpu', strict=True,
                    logger='silent')
    rebuilt.eval()
    rediff = (logits(rebuilt, images) - got).abs().max().item()
    tol = args.tol if args.tol is not None else (
        1e-5 if args.init == 'exact' else None)
    ok = rediff <= 1e-6 * max(scale, 1e-12)
    if tol is not None:
        ok = ok and diff <= tol * max(scale, 1e-12)
    n_before = sum(p.numel() for p in model.parameters())
    n_after = sum(p.numel() for p in converted.parameters())
    _log(report.table())
    rows = [
        ('config', args.config),
        ('checkpoint', f'{args.checkpoint} (layout {layout})'),
        ('init', args.init),
        ('converted / skipped convs',
         f'{len(report.converted)} / {len(report.skipped)}'),
        ('parameters original -> converted', f'{n_before:,} -> {n_after:,}'),
        ('conversion time', f'{seconds:.2f} s'),
        ('check images', f'{len(images)} sklearn digits at {size}x{size}'),
        ('max |logit|', f'{scale:.6g}'),
        ('max |Δ logit|', f'{diff:.3g} ({diff / max(scale, 1e-12):.3g} '
         f'relative)'),
        ('tolerance', 'not checked (soft init)' if tol is None else
         f'{tol:g} relative'),
        ('top-1 agreement', f'{agree * 100:.1f} %'),
        ('rebuilt from config, max |Δ|', f'{rediff:.3g}'),
        ('config', out_cfg),
        ('checkpoint', out_ckpt),
        ('result', 'OK' if ok else 'FAILED'),
    ]
    _log(_table(rows))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
