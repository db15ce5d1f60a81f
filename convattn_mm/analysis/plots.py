"""Figures of captured attention (matplotlib, 2-D maps only).

All functions take :class:`~convattn_mm.analysis.capture.LayerRecord`s and
measures from :func:`~convattn_mm.analysis.head_measures`, draw on a new
figure and save it to ``path`` (PNG). Attention maps are drawn in image
pixels: a key at map position ``k`` covers the image pixels
``[k·S, (k+1)·S)`` (``S`` the layer's stride).
"""
import math

import numpy as np
import torch

MASS_LEVELS = (0.1, 0.5, 0.9)


def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def attention_map(rec, row):
    """``[H, *in_shape]`` numpy: the attention of ``row`` scattered on the
    layer's map (slots outside the map -- zero padding -- dropped)."""
    keys = rec.keys[row]
    w = rec.weights[row]  # [H, Kw]
    n = math.prod(rec.in_shape)
    maps = torch.zeros(w.shape[0], n)
    ok = keys >= 0
    maps[:, keys[ok]] = w[:, ok]
    return maps.reshape(w.shape[0], *rec.in_shape).numpy()


def mass_thresholds(amap, levels=MASS_LEVELS):
    """Per mass ``m``: the weight ``t`` such that keys with ``a >= t`` hold
    at least ``m`` of the map's attention (the smallest such region)."""
    flat = np.sort(amap.reshape(-1))[::-1]
    cum = np.cumsum(flat)
    total = cum[-1] if cum.size else 0.0
    out = []
    for m in levels:
        i = int(np.searchsorted(cum, m * total))
        out.append(float(flat[min(i, flat.size - 1)]))
    return out


def _extent(rec):
    s = rec.stride or (1.0, 1.0)
    h, w = rec.in_shape
    return (-0.5, w * s[1] - 0.5, h * s[0] - 0.5, -0.5)


def _pixel_cells(rec, image):
    """Map cell of every image pixel row / column (``⌊p / S⌋``)."""
    s = rec.stride or (1.0, 1.0)
    h, w = rec.in_shape
    H, W = (image.shape[:2] if image is not None else
            (int(round(h * s[0])), int(round(w * s[1]))))
    cy = np.minimum((np.arange(H) / s[0]).astype(int), h - 1)
    cx = np.minimum((np.arange(W) / s[1]).astype(int), w - 1)
    return cy, cx


def _show_image(ax, image):
    if image is not None:
        ax.imshow(image, cmap='gray' if image.ndim == 2 else None,
                  interpolation='nearest')
    ax.set_xticks([])
    ax.set_yticks([])


def _mark(ax, rec, row):
    y, x = rec.query_pixel()[row].tolist()
    s = rec.stride or (1.0, 1.0)
    ax.plot(x + (s[1] - 1) / 2, y + (s[0] - 1) / 2, marker='+', color='cyan',
            markersize=9, mew=2)


def _short(name):
    return name.replace('backbone.', '').replace('.blocks.', '.b') \
        .replace('stages.', 's').replace('layers.', 'l') or '<model>'


def plot_attention_grid(records, rows, image, path, title=''):
    """One row per layer, one column per head: each head's attention at the
    query ``rows[layer]`` over the image (query marked +).

    Args:
        records: ``{layer: LayerRecord}``; rows: ``{layer: row index}``;
        image: ``[h, w]`` or ``[h, w, 3]`` array in the input's pixels.
    """
    plt = _plt()
    names = list(records)
    heads = max(records[n].num_heads for n in names)
    fig, axes = plt.subplots(len(names), heads,
                             figsize=(1.6 * heads + 0.8, 1.6 * len(names)),
                             squeeze=False)
    for i, n in enumerate(names):
        rec, row = records[n], rows[n]
        maps = attention_map(rec, row)
        for h in range(heads):
            ax = axes[i][h]
            if h >= rec.num_heads:
                ax.axis('off')
                continue
            _show_image(ax, image)
            a = maps[h]
            ax.imshow(a / max(a.max(), 1e-12), cmap='magma', alpha=0.65,
                      extent=_extent(rec), interpolation='nearest',
                      vmin=0, vmax=1)
            if image is not None:
                ax.set_xlim(-0.5, image.shape[1] - 0.5)
                ax.set_ylim(image.shape[0] - 0.5, -0.5)
            _mark(ax, rec, row)
            if i == 0:
                ax.set_title(f'head {h}', fontsize=8)
            if h == 0:
                ax.set_ylabel(_short(n), fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_contours(records, rows, image, path, levels=MASS_LEVELS, title=''):
    """Per layer, the ``levels`` attention-mass contours of every head around
    one query (Cordonnier et al. 2020's figure): head ``h`` in colour ``h``;
    solid / dashed / dotted for the 0.1 / 0.5 / 0.9 mass regions."""
    plt = _plt()
    names = list(records)
    cols = min(len(names), 4)
    nrows = -(-len(names) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.0 * cols,
                                                   3.0 * nrows + 0.4),
                             squeeze=False)
    colours = plt.get_cmap('tab10')
    styles = ['solid', 'dashed', 'dotted', 'dashdot']
    for i, n in enumerate(names):
        ax = axes[i // cols][i % cols]
        rec, row = records[n], rows[n]
        _show_image(ax, image)
        maps = attention_map(rec, row)
        cy, cx = _pixel_cells(rec, image)
        # pixel grid padded by one, so that regions close at the border
        ys = np.arange(-1, len(cy) + 1)
        xs = np.arange(-1, len(cx) + 1)
        for h in range(rec.num_heads):
            thr = mass_thresholds(maps[h], levels)
            for t, style in zip(thr, styles):
                if t <= 0:
                    continue
                region = (maps[h] >= t)[cy][:, cx].astype(float)
                ax.contour(xs, ys, np.pad(region, 1), levels=[0.5],
                           colors=[colours(h % 10)], linestyles=style,
                           linewidths=1.3)
        _mark(ax, rec, row)
        if image is not None:
            ax.set_xlim(-0.5, image.shape[1] - 0.5)
            ax.set_ylim(image.shape[0] - 0.5, -0.5)
        ax.set_title(_short(n), fontsize=8)
    for j in range(len(names), nrows * cols):
        axes[j // cols][j % cols].axis('off')
    handles = [
        plt.Line2D([], [], color='k', linestyle=st, label=f'{m:.0%} mass')
        for m, st in zip(levels, styles)
    ]
    fig.legend(handles=handles, loc='lower center', ncol=len(levels),
               fontsize=8, frameon=False)
    fig.suptitle(title or 'attention-mass contours (colour = head)',
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_kernels(measures, path, title=''):
    """Effective kernels ``K(δ)`` as heat maps: one row per layer, one
    column per head; titles give content dependence (cd) and distance to
    convolution (tv)."""
    plt = _plt()
    names = list(measures)
    heads = max(len(measures[n]['mean_distance']) for n in names)
    fig, axes = plt.subplots(len(names), heads,
                             figsize=(1.5 * heads + 0.8,
                                      1.6 * len(names) + 0.3),
                             squeeze=False)
    for i, n in enumerate(names):
        m = measures[n]
        k = m['effective_kernel']
        if k.dim() != 3:
            continue
        off = m['table_offsets']
        steps = (off[:, 1].max() - off[:, 1].min()) / max(k.shape[2] - 1, 1)
        ext = (float(off[:, 1].min() - steps / 2),
               float(off[:, 1].max() + steps / 2),
               float(off[:, 0].max() + steps / 2),
               float(off[:, 0].min() - steps / 2))
        for h in range(heads):
            ax = axes[i][h]
            if h >= k.shape[0]:
                ax.axis('off')
                continue
            ax.imshow(k[h].numpy(), cmap='viridis', extent=ext,
                      interpolation='nearest', vmin=0)
            ax.plot(0, 0, marker='+', color='red', markersize=5)
            ax.set_title(f"h{h} cd {float(m['content_dependence'][h]):.2f}"
                         f" tv {float(m['conv_distance'][h]):.2f}",
                         fontsize=6)
            ax.tick_params(labelsize=5)
            if h == 0:
                ax.set_ylabel(_short(n), fontsize=7)
    fig.suptitle(title or 'effective kernels K(δ) (axes: δ in image px)',
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_layer_summary(measures, path, title=''):
    """Per layer: each head's mean attention distance (px), content
    dependence and distance to convolution (dots), layer mean (line)."""
    plt = _plt()
    names = list(measures)
    keys = [('mean_distance', 'mean attention distance (px)'),
            ('content_dependence', 'content dependence'),
            ('conv_distance', 'distance to convolution (TV)')]
    fig, axes = plt.subplots(1, 3, figsize=(max(9, 1.0 * len(names) + 6),
                                            3.4))
    x = np.arange(len(names))
    for ax, (key, label) in zip(axes, keys):
        for i, n in enumerate(names):
            v = measures[n][key].numpy()
            ax.scatter(np.full(v.shape, i) + np.linspace(-0.15, 0.15,
                                                         len(v)), v, s=14,
                       c=np.arange(len(v)), cmap='tab10', vmin=0, vmax=9)
        ax.plot(x, [float(measures[n][key].mean()) for n in names], 'k-',
                lw=1)
        ax.set_xticks(x)
        ax.set_xticklabels([_short(n) for n in names], rotation=60,
                           fontsize=6, ha='right')
        ax.set_title(label, fontsize=9)
        if key != 'mean_distance':
            ax.set_ylim(-0.03, 1.03)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
