"""The GPU check, in one command: correctness of every backend on CUDA,
speed and peak memory against the baselines, and whole-model training.

    python benchmarks/bench_gpu.py [--json OUT] [--budget-s 420]
    python benchmarks/bench_gpu.py --device cpu --tiny   # the harness on CPU
    python benchmarks/bench_gpu.py --dry-run             # what would run

Sections, in order (each writes its rows to the JSON as soon as it ends; a
section that would start after ``--budget-s`` seconds is skipped and says
so, and each section stops starting new cases at its share of the budget
(35 %, 65 %, 100 %), so the whole run stays within about 8 minutes on one
H100/H200; torch.compile costs seconds per new call signature there):

1. ``correctness``: forward and backward in float32 for every backend that
   claims the call (``backend_support``), against ``reference``: ranks 1-3,
   the three borders, no term / bias / bias + relative keys, dilation 2 and
   query stride 2, small maps; then each encoding through a layer on
   ``backend='auto'``, compared with the same layer on ``reference``.
2. ``speed``: forward + backward ms and peak memory at B=4, C=96, 56x56,
   3 heads, K=7 and at a detection-size map (B=2, 200x336, C=64), for
   Conv2d 3x3, mmpretrain's ShiftWindowMSA, NATTEN ``na2d`` without bias,
   global SDPA and RelPosAttention with each encoding; plus the bias-table
   layer's peak memory at 4x the tokens (linearity).
3. ``models``: one training step of ConvAttnNet-T and SAResNet-50 at
   2x3x800x1333 with peak memory; ConvAttnNet-T against Swin-T training
   throughput at 224x224, batch 64, bf16 autocast.

Without CUDA (and without ``--device cpu``) it exits with status 2 at once.
``--tiny`` shrinks every size so that the CPU test suite runs the harness.
"""
import argparse
import json
import math
import os
import sys
import time
import traceback
import warnings

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import print_table, write_json  # noqa: E402

warnings.filterwarnings('ignore')

ENCODINGS = {
    'none': None,
    'bias table': dict(type='RelativeBiasTable'),
    'quadratic': dict(type='QuadraticEncoding'),
    'relative keys (u, v)': dict(type='RelativeKeys'),
    'rope (axial)': dict(type='RoPE'),
    'log-cpb': dict(type='LogCPB'),
}
SIZES = {
    'full': dict(
        sweep_maps={1: (40, ), 2: (12, 13), 3: (6, 7, 8)}, sweep_heads=2,
        sweep_dim=16, small=dict(B=4, C=96, S=(56, 56), heads=3, K=7),
        det=dict(B=2, C=64, S=(200, 336), heads=2, K=7), reps=10,
        model_input=(2, 3, 800, 1333), tput=dict(batch=64, size=224,
                                                 iters=10, warmup=3)),
    'tiny': dict(
        sweep_maps={1: (9, ), 2: (6, 7), 3: (6, 6, 7)}, sweep_heads=2,
        sweep_dim=4, small=dict(B=1, C=16, S=(14, 14), heads=2, K=7),
        det=dict(B=1, C=16, S=(14, 21), heads=2, K=7), reps=1,
        model_input=(1, 3, 64, 96), tput=dict(batch=1, size=224, iters=1,
                                               warmup=0)),
}


class Clock:
    """Peak memory and time of a forward + backward on one device."""

    def __init__(self, device):
        self.device = torch.device(device)
        self.cuda = self.device.type == 'cuda'

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def run(self, step, reps, warmup=2):
        """Median ms of ``step()`` and the peak memory it added (MiB; CUDA
        only, else nan)."""
        for _ in range(warmup):
            step()
        self.sync()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            step()
            self.sync()
            times.append(time.perf_counter() - t)
        peak = float('nan')
        if self.cuda:
            peak = (torch.cuda.max_memory_allocated(self.device) - base) / \
                2**20
        times.sort()
        return 1e3 * times[len(times) // 2], peak


# ------------------------------------------------------------ correctness
def correctness(args, sizes, device, deadline=float('inf')):
    from convattn_mm.models.layers import RelPosAttention
    from convattn_mm.ops import (PositionCarry, attention_bhnd,
                                 attention_request, backend_support,
                                 make_window)
    rows = []
    H, D = sizes['sweep_heads'], sizes['sweep_dim']
    # most coverage first: every rank and border with both terms, then
    # dilation and stride, then the other term sets
    cases = []
    for variant in (((1, 1), 'bias+rel_keys'), ((2, 1), 'bias+rel_keys'),
                    ((1, 2), 'bias+rel_keys'), ((1, 1), 'none'),
                    ((2, 1), 'bias'), ((1, 2), 'bias')):
        for rank, spatial in sizes['sweep_maps'].items():
            for border in ('shift', 'mask', 'zeros'):
                cases.append((rank, spatial, border) + variant[0] +
                             (variant[1], ))
    g = torch.Generator().manual_seed(0)
    for i, (rank, spatial, border, dil, stride, terms) in enumerate(cases):
        if time.perf_counter() > deadline:
            rows.append(dict(kind='skipped', cases_left=len(cases) - i,
                             reason='time budget', ok=True))
            break
        spec = make_window(spatial, 3, dil, border, stride)
        n, T = math.prod(spatial), math.prod(spec.table_shape)

        def leaf(*shape):
            return torch.randn(*shape, generator=g).to(device).requires_grad_()

        q, k, v = leaf(2, H, n, D), leaf(2, H, n, D), leaf(2, H, n, D)
        bias = leaf(H, T) if terms != 'none' else None
        rel = leaf(H, T, D) if terms == 'bias+rel_keys' else None
        leaves = [t for t in (q, k, v, bias, rel) if t is not None]
        carry = PositionCarry(bias=bias is not None, rel_keys=rel is not None)
        support = backend_support(spec, attention_request(q, carry, leaves))
        outs = {}
        for name, reason in support.reasons.items():
            if reason is not None or name == 'reference':
                continue
            outs[name] = None
        for name in ['reference'] + list(outs):
            try:
                o = attention_bhnd(q, k, v, spec, 0.4, bias, rel, name)
                w = torch.linspace(-1, 1, o.numel(), device=o.device)
                grads = torch.autograd.grad((o.flatten() * w).sum(), leaves)
                outs[name] = (o, ) + grads
            except Exception as e:  # noqa: BLE001 -- reported, not hidden
                outs[name] = f'{type(e).__name__}: {e}'[:200]
        ref = outs.pop('reference')
        for name, got in outs.items():
            if isinstance(got, str):
                err, ok = got, False
            else:
                err = max(float((a - b).abs().max()) for a, b in zip(got, ref))
                ok = err < 1e-4
            rows.append(dict(kind='op', rank=rank, border=border, dilation=dil,
                             query_stride=stride, terms=terms, backend=name,
                             max_abs_err=err, ok=ok))
    # each encoding through the layer, on the plan 'auto' makes
    spatial = sizes['sweep_maps'][2]
    for enc_name, enc in ENCODINGS.items():
        for border in ('shift', 'mask', 'zeros'):
            if time.perf_counter() > deadline:
                break
            torch.manual_seed(0)
            layer = RelPosAttention(4 * H, H, kernel_size=3, border=border,
                                    pos_encoding=enc).to(device)
            x = torch.randn(2, *spatial, 4 * H, device=device,
                            requires_grad=True)
            spec, _ = layer.window(spatial)
            plan = layer.plan(x.new_zeros(1, requires_grad=True), spec)
            res = []
            for backend in ('auto', 'reference'):
                layer.backend = backend
                y = layer(x)
                res.append((y, ) + torch.autograd.grad(
                    y.square().sum(), [x] + list(layer.parameters())))
            layer.backend = 'auto'
            err = max(float((a - b).abs().max()) for a, b in zip(*res))
            rows.append(dict(kind='layer', rank=2, border=border,
                             encoding=enc_name, backend=plan.backend,
                             bias_as=plan.bias_as, max_abs_err=err,
                             ok=err < 1e-3))
    return rows


# ------------------------------------------------------------------ speed
def _layer_rows(shape, clock, reps, encodings):
    from convattn_mm.models.layers import RelPosAttention
    B, C, S, heads, K = (shape[k] for k in ('B', 'C', 'S', 'heads', 'K'))
    dev = clock.device
    x = torch.randn(B, *S, C, device=dev, requires_grad=True)
    rows = []
    for name in encodings:
        layer = RelPosAttention(C, heads, kernel_size=K,
                                pos_encoding=ENCODINGS[name]).to(dev)
        spec, _ = layer.window(S)
        plan = layer.plan(x, spec)
        ms, mib = clock.run(lambda: layer(x).sum().backward(), reps)
        rows.append(dict(layer=f'RelPosAttention K={K}, {name}',
                         backend=plan.backend, ms=ms, peak_mib=mib))
    return rows


def _baseline_rows(shape, clock, reps):
    from mmpretrain.models.utils import ShiftWindowMSA
    B, C, S, heads, K = (shape[k] for k in ('B', 'C', 'S', 'heads', 'K'))
    dev = clock.device
    rows = []
    x_nchw = torch.randn(B, C, *S, device=dev, requires_grad=True)
    conv = torch.nn.Conv2d(C, C, 3, padding=1).to(dev)
    rows.append(dict(layer='Conv2d 3x3', backend='-', **_timed(
        clock, lambda: conv(x_nchw).sum().backward(), reps)))
    swin = ShiftWindowMSA(C, heads, window_size=K, shift_size=K // 2).to(dev)
    x_tok = torch.randn(B, S[0] * S[1], C, device=dev, requires_grad=True)
    rows.append(dict(layer=f'ShiftWindowMSA (w{K}, shifted)', backend='-',
                     **_timed(clock, lambda: swin(x_tok, S).sum().backward(),
                              reps)))
    d = C // heads
    qkv = torch.randn(3, B, *S, heads, d, device=dev, requires_grad=True)
    try:
        import natten

        from convattn_mm.ops.natten_backend import path
        rows.append(dict(
            layer=f'NATTEN na2d K={K}, no bias', backend=path(dev.type),
            **_timed(clock, lambda: natten.na2d(
                qkv[0], qkv[1], qkv[2], kernel_size=K,
                **({} if dev.type == 'cuda' and natten.HAS_LIBNATTEN else
                   dict(torch_compile=True))).sum().backward(), reps)))
    except Exception as e:  # noqa: BLE001 -- reported in the table
        rows.append(dict(layer='NATTEN na2d', backend='-', ms=float('nan'),
                         peak_mib=float('nan'), error=str(e)[:200]))
    flat = qkv.flatten(2, 3).transpose(2, 3)  # [3, B, heads, N, d]
    rows.append(dict(layer='global SDPA', backend='torch', **_timed(
        clock, lambda: torch.nn.functional.scaled_dot_product_attention(
            flat[0], flat[1], flat[2]).sum().backward(), reps)))
    return rows


def _timed(clock, step, reps):
    ms, mib = clock.run(step, reps)
    return dict(ms=ms, peak_mib=mib)


def speed(args, sizes, device, deadline=float('inf')):
    clock = Clock(device)
    reps = sizes['reps']
    out = []
    for label, shape in (('56x56', sizes['small']), ('detection',
                                                     sizes['det'])):
        if time.perf_counter() > deadline:
            out.append(dict(layer='skipped', map=label, reason='time budget'))
            continue
        rows = _baseline_rows(shape, clock, reps)
        encs = list(ENCODINGS) if label == '56x56' else ['bias table']
        rows += _layer_rows(shape, clock, reps, encs)
        conv_ms = rows[0]['ms']
        swin_ms = rows[1]['ms']
        for r in rows:
            r.update(map=label, vs_conv=r['ms'] / conv_ms,
                     vs_swin=r['ms'] / swin_ms)
        out += rows
    # linearity: the bias-table layer at 4x the tokens
    if time.perf_counter() > deadline:
        out.append(dict(layer='skipped', map='linearity',
                        reason='time budget'))
        return out
    small = dict(sizes['small'])
    big = dict(small, S=tuple(2 * s for s in small['S']))
    mem = [_layer_rows(s, clock, reps, ['bias table'])[0]['peak_mib']
           for s in (small, big)]
    out.append(dict(layer='bias table, 4x tokens', map='linearity',
                    backend='-', ms=float('nan'), peak_mib=mem[1],
                    vs_conv=float('nan'), vs_swin=float('nan'),
                    memory_ratio_4x_tokens=mem[1] / mem[0]
                    if mem[0] == mem[0] and mem[0] > 0 else float('nan')))
    return out


# ----------------------------------------------------------------- models
def models(args, sizes, device, deadline=float('inf')):
    from mmpretrain.models.backbones import SwinTransformer

    from convattn_mm.models.backbones import ConvAttnNet, SAResNet
    clock = Clock(device)
    rows = []
    x = torch.randn(*sizes['model_input'], device=device)
    for name, build in (('ConvAttnNet-T', lambda: ConvAttnNet('tiny')),
                        ('SAResNet-50', lambda: SAResNet(depth=50))):
        if time.perf_counter() > deadline:
            rows.append(dict(model=name, what='skipped: time budget'))
            continue
        net = build().to(device)
        net.train()

        def step():
            sum(f.float().mean() for f in net(x)).backward()

        ms, mib = clock.run(step, reps=1, warmup=1)
        rows.append(dict(model=name, what='train step',
                         input=list(sizes['model_input']), ms=ms,
                         peak_mib=mib))
        del net
    t = sizes['tput']
    xb = torch.randn(t['batch'], 3, t['size'], t['size'], device=device)
    y = torch.randint(0, 1000, (t['batch'], ), device=device)
    amp = torch.bfloat16
    for name, build, ch in (('Swin-T', lambda: SwinTransformer('tiny'), 768),
                            ('ConvAttnNet-T', lambda: ConvAttnNet('tiny'),
                             512)):
        if time.perf_counter() > deadline:
            rows.append(dict(model=name, what='skipped: time budget'))
            continue
        net = build().to(device)
        net.train()
        head = torch.nn.Linear(ch, 1000).to(device)
        opt = torch.optim.SGD(list(net.parameters()) + list(head.parameters()),
                              lr=1e-3)

        def step():
            with torch.autocast(torch.device(device).type, dtype=amp):
                f = net(xb)[-1]
                f = f.mean((2, 3)) if f.dim() == 4 else f
                loss = torch.nn.functional.cross_entropy(head(f), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        ms, mib = clock.run(step, reps=t['iters'], warmup=t['warmup'] + 1)
        rows.append(dict(model=name, what=f'AMP bf16 throughput '
                         f'{t["size"]}px batch {t["batch"]}', ms=ms,
                         images_per_s=1e3 * t['batch'] / ms, peak_mib=mib))
        del net
    return rows


SECTIONS = {'correctness': correctness, 'speed': speed, 'models': models}
#: share of ``--budget-s`` by which each section must have finished
DEADLINES = {'correctness': 0.35, 'speed': 0.65, 'models': 1.0}


def dry_run(args, sizes):
    """Print what would run and the plans a CUDA call would get."""
    from convattn_mm.ops import PositionCarry, backend_support, make_window
    from convattn_mm.ops import flex
    print('sections:', ', '.join(SECTIONS))
    if not torch.cuda.is_available():
        print('no CUDA device here: the plans below assume Triton works on '
              'the GPU (libnatten as installed here)')
        real = flex.unavailable_reason
        flex.unavailable_reason = lambda dev: None if dev == 'cuda' \
            else real(dev)
    for name, carry in (('bias table', PositionCarry(bias=True)),
                        ('quadratic', PositionCarry(bias=True,
                                                    extra_dims=True)),
                        ('rope', PositionCarry(rotation=True))):
        for border in ('shift', 'zeros'):
            spec = make_window(sizes['small']['S'], 7, 1, border)
            req = dict(device='cuda', dtype=torch.float32, training=True,
                       dropout=False, carry=carry)
            print(f'--- {name}, border={border!r}, CUDA float32 training')
            print(backend_support(spec, req))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--json', default='work_dirs/bench_gpu.json')
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--tiny', action='store_true',
                        help='tiny sizes (the CPU test of this harness)')
    parser.add_argument('--dry-run', action='store_true')
    parser.add_argument('--budget-s', type=float, default=420.0,
                        help='skip sections that would start after this')
    parser.add_argument('--sections', default=','.join(SECTIONS))
    args = parser.parse_args(argv)
    sizes = SIZES['tiny' if args.tiny else 'full']
    if args.dry_run:
        return dry_run(args, sizes)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        print('bench_gpu.py needs a CUDA device: torch.cuda.is_available() is '
              'False. Run it on a GPU machine, or check the harness with '
              '--device cpu --tiny (or --dry-run).', file=sys.stderr)
        return 2
    device = args.device
    from convattn_mm.ops.natten_backend import path
    result = dict(device=torch.cuda.get_device_name(device)
                  if device.startswith('cuda') else 'cpu',
                  torch=torch.__version__, natten_path=path(
                      torch.device(device).type), tiny=args.tiny,
                  sections={})
    start = time.perf_counter()
    for name in args.sections.split(','):
        if time.perf_counter() - start > args.budget_s:
            result['sections'][name] = dict(skipped='time budget')
            continue
        t = time.perf_counter()
        try:
            rows = SECTIONS[name](args, sizes, device,
                                  start + DEADLINES[name] * args.budget_s)
            result['sections'][name] = dict(rows=rows,
                                            seconds=time.perf_counter() - t)
        except Exception:  # noqa: BLE001 -- a broken section is a result
            result['sections'][name] = dict(error=traceback.format_exc())
        write_json(args.json, result)
        _print(name, result['sections'][name])
    write_json(args.json, result)
    failed = [r for r in result['sections'].get('correctness', {}).get(
        'rows', []) if not r['ok']]
    print(f'correctness: {len(failed)} failing rows')
    return 1 if failed or any('error' in s
                              for s in result['sections'].values()) else 0


def _fmt(v):
    if isinstance(v, float):
        return f'{v:.3g}'
    return str(v)


def _print(name, section):
    print(f'\n== {name} ==')
    if 'rows' not in section:
        print(json.dumps(section)[:2000])
        return
    rows = section['rows']
    if not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print_table(keys, [[_fmt(r.get(k, '')) for k in keys] for r in rows])


if __name__ == '__main__':
    sys.exit(main())
