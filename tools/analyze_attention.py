"""How convolution-like is each head? Figures and measures of a model's
attention on real images.

    python tools/analyze_attention.py CONFIG CHECKPOINT [--images F ...]
        [--out-dir DIR] [--num-images N] [--queries-per-axis Q]
        [--query-pixels Y,X ...] [--layers PATTERN ...]

CONFIG: an mmpretrain classifier config whose model holds convattn_mm
attention layers (any backbone of the package, or a conv-converted network,
``type='convattn_mm.ConvToAttention'``). CHECKPOINT: its weights, or
``none`` to look at the initialisation. Images: the config's test set (for
the package's configs, the embedded digits' test split), or image files.

Writes into DIR (default ``work_dirs/analysis/<config name>``):
``attention_maps_q<i>.png`` (each head's attention at query pixel i, per
layer), ``attention_contours.png`` (0.1/0.5/0.9 attention-mass contours of
every head around one query, per layer), ``effective_kernels.png``,
``layer_summary.png`` (mean distance, content dependence, distance to
convolution per head and layer), ``measures.json`` and ``measures.csv``.
See docs/analysis.md for the definitions.
"""
import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def pixel(text):
    try:
        y, x = (int(v) for v in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'query pixel {text!r}: expected Y,X (two ints)') from None
    return (y, x)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Attention maps, contours, effective kernels and '
        'conv-likeness measures of every attention head.')
    p.add_argument('config')
    p.add_argument('checkpoint', help="checkpoint file, or 'none'")
    p.add_argument('--images', nargs='+', default=None,
                   help='image files (default: the config test set)')
    p.add_argument('--num-images', type=int, default=32,
                   help='test-set images used for the measures')
    p.add_argument('--size', type=int, nargs='+', default=None,
                   help='resize image files to H [W] (default: the test '
                   "set's image size)")
    p.add_argument('--out-dir', default=None)
    p.add_argument('--queries-per-axis', type=int, default=16,
                   help='queries per axis of each layer grid for the '
                   'measures (0: all)')
    p.add_argument('--query-pixels', type=pixel, nargs='+', default=None,
                   help='image pixels Y,X whose attention is drawn')
    p.add_argument('--layers', nargs='+', default=None,
                   help='attention-layer name patterns (default: all)')
    p.add_argument('--batch-size', type=int, default=16)
    p.add_argument('--device', default='cpu')
    p.add_argument('--title', default=None)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from convattn_mm.analysis.report import analyze, build_model, load_images
    from convattn_mm.analysis.measures import measures_to_rows
    name = osp.splitext(osp.basename(args.config))[0]
    out = args.out_dir or osp.join('work_dirs', 'analysis', name)
    model, cfg = build_model(args.config, args.checkpoint,
                             device=args.device)
    size = None
    if args.size:
        size = tuple(args.size[:2]) if len(args.size) > 1 else (
            args.size[0], ) * 2
    samples, display = load_images(cfg, args.images, args.num_images, size)
    measures = analyze(model, samples, display, out,
                       queries_per_axis=args.queries_per_axis,
                       query_pixels=args.query_pixels, layers=args.layers,
                       batch_size=args.batch_size,
                       title=args.title or name)
    print(f'{"layer":<36} {"head":>4} {"dist px":>8} {"content":>8} '
          f'{"conv TV":>8} {"peak":>6}')
    for r in measures_to_rows(measures):
        print(f'{r["layer"]:<36} {r["head"]:>4} {r["mean_distance"]:>8.2f} '
              f'{r["content_dependence"]:>8.3f} {r["conv_distance"]:>8.3f} '
              f'{r["peak_mass"]:>6.2f}')
    print(f'wrote figures and measures.json/.csv to {out}')
    return measures


if __name__ == '__main__':
    main()
