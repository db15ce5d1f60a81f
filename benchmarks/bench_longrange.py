"""Long-range task: accuracy against attention window (receptive field).

    python benchmarks/bench_longrange.py [--size 32] [--epochs 15]
    python benchmarks/bench_longrange.py --quick     # smoke run

Generated data (seeded): a ``S×S`` grey image holds two 3×3 marks, one in
the left quarter and one in the right quarter of the image (so a window must
span at least ``S/2 + 6`` pixels to see both), each a '+' or an '×'; the label is whether the
two marks are the same shape (balanced). Additive features of two separate
detections cannot decide this (it is an XOR), so a model must have a token
whose receptive field covers both marks.

Model: ``IsotropicAttnNet`` (2×2 space-to-depth, then ``L`` attention layers
without any down-sampling, learned bias, window ``K``), global average
pooling, linear head. Receptive field in pixels: ``2·(1 + L·(K−1))`` along
each axis (``K`` in tokens); global attention covers everything.
"""
import argparse
import os.path as osp
import sys
import time

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import mean_ci, print_table, write_json  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PLUS = torch.tensor([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.float)
CROSS = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=torch.float)


def make_data(n, size, seed):
    """``x [n, 3, S, S]``, ``y [n]`` (1 = same shape)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, size, size)
    a = torch.randint(0, 2, (n, ), generator=g)
    b = torch.randint(0, 2, (n, ), generator=g)
    q = size // 4
    for i in range(n):
        for kind, (lo, hi) in ((a[i], (0, q - 3)),
                               (b[i], (size - q, size - 3))):
            r = int(torch.randint(0, size - 3, (1, ), generator=g))
            c = int(torch.randint(lo, hi + 1, (1, ), generator=g))
            x[i, 0, r:r + 3, c:c + 3] = PLUS if kind == 0 else CROSS
    x = x + 0.05 * torch.randn(x.shape, generator=g)
    return x.expand(-1, 3, -1, -1).contiguous(), (a == b).long()


class Net(torch.nn.Module):

    def __init__(self, window, layers, dims, heads):
        super().__init__()
        from convattn_mm.models.backbones import IsotropicAttnNet
        self.backbone = IsotropicAttnNet(
            num_layers=layers, num_heads=heads, embed_dims=dims,
            ffn_dims=2 * dims, kernel_size=window, pos_encoding='learned',
            pre_norm=True)
        self.backbone.init_weights()
        self.head = torch.nn.Linear(dims, 2)

    def forward(self, x):
        return self.head(self.backbone(x)[-1].mean((2, 3)))


def train_eval(window, args, seed):
    torch.manual_seed(seed)
    xtr, ytr = make_data(args.train, args.size, 1000 + seed)
    xte, yte = make_data(args.test, args.size, 2000 + seed)
    net = Net(window, args.layers, args.dims, args.heads)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.01)
    steps = args.epochs * (len(xtr) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, steps)
    t = time.perf_counter()
    for _ in range(args.epochs):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr) - args.batch + 1, args.batch):
            idx = perm[i:i + args.batch]
            loss = torch.nn.functional.cross_entropy(net(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    sec = time.perf_counter() - t
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(xte[i:i + 256]).argmax(-1)
                          for i in range(0, len(xte), 256)])
    return 100.0 * (pred == yte).float().mean().item(), sec


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', type=int, default=32)
    p.add_argument('--layers', type=int, default=2)
    p.add_argument('--dims', type=int, default=32)
    p.add_argument('--heads', type=int, default=4)
    p.add_argument('--windows', default='3,5,7,9,11,global')
    p.add_argument('--train', type=int, default=4000)
    p.add_argument('--test', type=int, default=1000)
    p.add_argument('--epochs', type=int, default=15)
    p.add_argument('--batch', type=int, default=64)
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--seeds', type=int, default=2)
    p.add_argument('--quick', action='store_true')
    p.add_argument('--json', default=osp.join(ROOT, 'work_dirs',
                                              'bench_longrange.json'))
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.train, args.test, args.epochs = 16, 128, 128, 1
        args.seeds, args.windows = 1, '3,global'
    tokens = args.size // 2
    rows, results = [], []
    for w in args.windows.split(','):
        window = 'global' if w == 'global' else int(w)
        rf = args.size if window == 'global' else min(
            args.size, 2 * (1 + args.layers * (window - 1)))
        accs, secs = [], []
        for seed in range(args.seeds):
            acc, sec = train_eval(window, args, seed)
            accs.append(acc)
            secs.append(sec)
        m, ci = mean_ci(accs)
        # both marks span between S/2 + 6 and S pixels horizontally (and up
        # to S vertically): a token's field covers both in every image iff
        # RF >= S, in none iff RF < S/2 + 6
        covers = ('all' if rf >= args.size else
                  'none' if rf < args.size // 2 + 6 else 'some')
        results.append(dict(window=w, receptive_field_px=rf,
                            covers_both=covers, accuracy=accs, mean=m,
                            ci95=ci, train_sec=secs))
        rows.append([w, f'{rf} px', covers,
                     f'{m:.1f} ± {ci:.1f}', f'{sum(secs) / len(secs):.0f}'])
    print(f'\nlong-range task: {args.size}x{args.size} images ({tokens}x'
          f'{tokens} tokens), {args.layers} layers, {args.seeds} seed(s)'
          f'{" (QUICK smoke run: numbers meaningless)" if args.quick else ""}')
    print_table(['window', 'receptive field', 'covers both marks in',
                 'test acc % (95% CI)', 'train s'], rows)
    write_json(args.json, dict(args=vars(args), results=results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
