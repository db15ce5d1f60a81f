"""End-to-end analysis of a model: build it from a config, run it on real
images inside :func:`capture_attention`, write figures and tables.

Used by ``tools/analyze_attention.py`` and ``tools/make_gallery.py``.
"""
import csv
import json
import os
import os.path as osp

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint

from convattn_mm import compat
from convattn_mm import registry  # noqa: F401  (the package's registries)

from . import plots
from .capture import capture_attention, select_layers
from .measures import head_measures, measures_to_rows

FIGURES = ('attention_maps_q{i}.png', 'attention_contours.png',
           'effective_kernels.png', 'layer_summary.png')


def build_model(config, checkpoint=None, cfg_options=None, device='cpu'):
    """Build ``config``'s model (default scope of the config) and load
    ``checkpoint`` (None or ``'none'``: keep the initialisation, e.g. to
    look at a conv-init before training). Returns ``(model, cfg)`` in eval
    mode."""
    _apply_compat()
    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = MODELS.build(cfg.model)
    if hasattr(model, 'init_weights'):
        model.init_weights()
    if checkpoint not in (None, 'none', ''):
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                        logger='current')
    return model.to(device).eval(), cfg


def _apply_compat():
    """Plain, ``weights_only``-safe checkpoints (convattn_mm.compat)."""
    compat.apply()


def load_images(cfg, paths=None, num_images=16, size=None):
    """A batch for the model's data preprocessor, and images to draw on.

    Args:
        cfg: the model's config; without ``paths``, the first
            ``num_images`` samples of ``cfg.test_dataloader.dataset`` (for
            the package's configs: the digits test split).
        paths: image files (any format PIL reads): resized to ``size`` (or
            the test set's image size) and packed like the dataset's.
    Returns:
        ``(samples, display)``: a list of packed samples (``inputs`` uint8
        ``[C, H, W]``, ``data_samples``) and ``[N, H, W(, 3)]`` uint8.
    """
    from mmpretrain.registry import DATASETS
    from mmpretrain.structures import DataSample
    ds_cfg = cfg.test_dataloader.dataset
    dataset = None
    if not paths or size is None:
        dataset = DATASETS.build(ds_cfg)
    if paths:
        from PIL import Image
        if size is None:
            size = tuple(dataset[0]['inputs'].shape[-2:])
        elif isinstance(size, int):
            size = (size, size)
        samples = []
        for p in paths:
            img = Image.open(p).convert('RGB').resize(size[::-1],
                                                      Image.BILINEAR)
            arr = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)
            samples.append(dict(inputs=arr.contiguous(),
                                data_samples=DataSample()))
    else:
        n = min(num_images, len(dataset))
        samples = [dataset[i] for i in range(n)]
    display = []
    for s in samples:
        x = s['inputs']
        img = x.permute(1, 2, 0).numpy()
        if img.shape[-1] == 3 and (img == img[..., :1]).all():
            img = img[..., 0]
        display.append(img)
    return samples, np.stack(display)


def _forward(model, samples):
    from mmengine.dataset import pseudo_collate
    data = model.data_preprocessor(pseudo_collate(samples), False)
    model(data['inputs'], mode='tensor')
    return tuple(data['inputs'].shape[2:])


def default_query_pixels(size):
    """Three query pixels: the centre, upper-left and lower-right of the
    middle."""
    h, w = size
    return [(h // 2, w // 2), (h // 4, w // 4), (3 * h // 4, 5 * w // 8)]


def analyze(model, samples, display, out_dir, queries_per_axis=16,
            query_pixels=None, layers=None, batch_size=16, title='',
            progress=True):
    """Capture, measure, plot, save.

    Writes into ``out_dir``: ``measures.json`` (per head and, per layer,
    the effective kernels), ``measures.csv`` (per head), and the PNGs of
    :mod:`convattn_mm.analysis.plots` (2-D models).

    Args:
        queries_per_axis: queries per axis of every layer's grid used for
            the measures (0: every query).
        query_pixels: image pixels whose attention is drawn (default
            :func:`default_query_pixels`), on the first image.
    Returns:
        ``{layer: head_measures}``.
    """
    os.makedirs(out_dir, exist_ok=True)
    names = [n for n, _ in select_layers(model, layers)]
    batches = [samples[i:i + batch_size]
               for i in range(0, len(samples), batch_size)]
    if progress:
        from tqdm import tqdm
        batches = tqdm(batches, desc='capturing attention', unit='batch')
    with torch.no_grad(), capture_attention(
            model, layers=names,
            queries=queries_per_axis or None) as cap:
        for b in batches:
            size = _forward(model, b)
    measures = {}
    items = names
    if progress:
        from tqdm import tqdm
        items = tqdm(names, desc='measuring heads', unit='layer')
    for n in items:
        measures[n] = head_measures(cap.merged(n))
    _save_tables(measures, out_dir, dict(title=title, images=len(samples),
                                         image_size=list(size),
                                         queries_per_axis=queries_per_axis))
    if len(size) != 2:
        return measures
    pixels = query_pixels or default_query_pixels(size)
    with torch.no_grad(), capture_attention(model, layers=names,
                                            queries=pixels) as cap:
        _forward(model, samples[:1])
    records = {n: cap.merged(n) for n in names}
    for i, p in enumerate(pixels):
        plots.plot_attention_grid(
            records, {n: i for n in names}, display[0],
            osp.join(out_dir, FIGURES[0].format(i=i)),
            title=f'{title} attention at pixel {tuple(p)}'.strip())
    plots.plot_contours(records, {n: 0 for n in names}, display[0],
                        osp.join(out_dir, FIGURES[1]),
                        title=f'{title} attention-mass contours at pixel '
                        f'{tuple(pixels[0])} (colour = head)'.strip())
    plots.plot_kernels(measures, osp.join(out_dir, FIGURES[2]),
                       title=f'{title} effective kernels K(δ), δ in image '
                       f'px'.strip())
    plots.plot_layer_summary(measures, osp.join(out_dir, FIGURES[3]),
                             title=title)
    return measures


def _save_tables(measures, out_dir, meta):
    rows = measures_to_rows(measures)
    with open(osp.join(out_dir, 'measures.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in rows:
            writer.writerow(dict(r, peak_offset=' '.join(
                str(v) for v in r['peak_offset'])))
    layers = {
        n: dict(effective_kernel=np.round(m['effective_kernel'].numpy(),
                                          5).tolist(),
                table_offsets_px=m['table_offsets'].tolist())
        for n, m in measures.items()
    }
    with open(osp.join(out_dir, 'measures.json'), 'w') as f:
        json.dump(dict(meta=meta, heads=rows, layers=layers), f, indent=1)
