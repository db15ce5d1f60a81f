"""The main job: train the default model on the embedded digits set, evaluate
it, save the checkpoint and a picture.

    python tools/demo.py [--work-dir work_dirs/demo] [--epochs N]
        [--cfg-options KEY=VALUE ...]

Trains ``configs/convattn_net/convattnnet-demo_1xb64_digits.py`` with
mmengine's Runner (its normal logs), tests it on the 360 held-out digits,
and writes ``demo.png``: the training curve (loss per iteration and test
accuracy per validation, read from the Runner's scalar log) and, for one test
image, the attention of each head of the first local-attention layer at one
query pixel (recorded with ``RelPosAttention.recording``).
"""
import argparse
import json
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'convattn_net',
                  'convattnnet-demo_1xb64_digits.py')


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--config', default=CONFIG)
    p.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo'))
    p.add_argument('--epochs', type=int, default=None,
                   help='override train_cfg.max_epochs')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config keys, e.g. a smaller budget: '
                   'train_dataloader.dataset.indices=64')
    return p.parse_args(argv)


def read_scalars(log_dir):
    """The Runner's scalar log (LocalVisBackend): list of dicts."""
    path = osp.join(log_dir, 'vis_data', 'scalars.json')
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def attention_at(model, img, layer_name, query):
    """Attention maps ``[H, h, w]`` of ``layer_name`` at output ``query`` for
    one input image ``[3, S, S]`` (already a model input: preprocessed)."""
    import torch
    layer = dict(model.named_modules())[layer_name]
    with torch.no_grad(), layer.recording(queries=[query]) as rec:
        model.backbone(img[None])
    r = rec.records[0]
    w, keys = r['weights'][0, :, 0], r['keys'][0]  # [H, Kw], [Kw]
    shape = r['in_shape']
    maps = torch.zeros(w.shape[0], int(torch.tensor(shape).prod()))
    valid = keys >= 0
    maps[:, keys[valid]] = w[:, valid]
    return maps.reshape(w.shape[0], *shape), shape


def plot(scalars, img, maps, map_shape, query, layer_name, acc, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    heads = maps.shape[0]
    fig, axes = plt.subplots(1, 2 + heads, figsize=(4 * (2 + heads), 3.8))
    # training curve
    ax = axes[0]
    it = [(r['step'], r['loss']) for r in scalars if 'loss' in r]
    ax.plot([s for s, _ in it], [v for _, v in it], color='tab:blue')
    ax.set_xlabel('iteration')
    ax.set_ylabel('training loss', color='tab:blue')
    val = [(r['step'], r['accuracy/top1']) for r in scalars
           if 'accuracy/top1' in r]
    if val:
        per_epoch = max(s for s, _ in it) / max(s for s, _ in val)
        ax2 = ax.twinx()
        ax2.plot([s * per_epoch for s, _ in val], [v for _, v in val], 'o-',
                 color='tab:red')
        ax2.set_ylabel('test accuracy (%)', color='tab:red')
        ax2.set_ylim(0, 100)
    ax.set_title(f'training (final test accuracy {acc:.1f} %)')
    # the image and the query
    S = img.shape[-1]
    scale = S / map_shape[0]
    ax = axes[1]
    ax.imshow(img, cmap='gray')
    cy, cx = (query[0] + 0.5) * scale - 0.5, (query[1] + 0.5) * scale - 0.5
    ax.add_patch(plt.Rectangle((cx - scale / 2, cy - scale / 2), scale,
                               scale, fill=False, color='red', lw=2))
    ax.set_title(f'test image, query {tuple(query)} of {tuple(map_shape)}')
    ax.axis('off')
    for h in range(heads):
        ax = axes[2 + h]
        m = np.kron(maps[h].numpy(), np.ones((int(scale), int(scale))))
        ax.imshow(img, cmap='gray')
        ax.imshow(m, cmap='magma', alpha=0.65,
                  extent=(-0.5, S - 0.5, S - 0.5, -0.5))
        ax.add_patch(plt.Rectangle((cx - scale / 2, cy - scale / 2), scale,
                                   scale, fill=False, color='cyan', lw=1.5))
        ax.set_title(f'head {h}: max weight {maps[h].max():.2f}')
        ax.axis('off')
    fig.suptitle(f'attention of {layer_name} at the query pixel')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config
    from mmengine.runner import Runner

    from convattn_mm.models.layers import RelPosAttention

    start = time.time()
    cfg = Config.fromfile(args.config)
    cfg.work_dir = args.work_dir
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.epochs is not None:
        cfg.train_cfg.max_epochs = args.epochs
        cfg.train_cfg.val_interval = min(cfg.train_cfg.val_interval,
                                         args.epochs)
        cfg.default_hooks.checkpoint.interval = args.epochs
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    acc = float(metrics['accuracy/top1'])
    ckpt_file = osp.join(cfg.work_dir, 'last_checkpoint')
    with open(ckpt_file) as f:
        checkpoint = f.read().strip()

    # attention maps of the first attention layer, for one test image
    model = runner.model
    model.eval()
    name = next(n for n, m in model.named_modules()
                if isinstance(m, RelPosAttention))
    sample = runner.test_dataloader.dataset[0]
    data = model.data_preprocessor(
        dict(inputs=[sample['inputs']], data_samples=[sample['data_samples']
                                                      ]), False)
    img = data['inputs'][0]
    layer = dict(model.named_modules())[name]
    probe = {}

    def grab(mod, inp, out):
        probe['shape'] = tuple(inp[0].shape[1:-1])

    handle = layer.register_forward_hook(grab)
    import torch
    with torch.no_grad():
        model.backbone(img[None])
    handle.remove()
    h, w = probe['shape']
    query = (h // 2, w // 2)
    maps, map_shape = attention_at(model, img, name, query)
    scalars = read_scalars(runner.log_dir)
    picture = osp.join(cfg.work_dir, 'demo.png')
    raw = sample['inputs'][0].numpy()
    plot(scalars, raw, maps, map_shape, query, name, acc, picture)
    minutes = (time.time() - start) / 60
    print(f'\ntest accuracy: {acc:.2f} % on {len(runner.test_dataloader.dataset)}'
          f' held-out digits (chance 10 %); {minutes:.1f} min')
    print(f'checkpoint:    {checkpoint}')
    print(f'picture:       {picture}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
