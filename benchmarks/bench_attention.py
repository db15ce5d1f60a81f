"""Benchmark RelPosAttention on the CPU against Conv2d 3x3 and Swin's
ShiftWindowMSA, in one process, as ratios; and peak memory per map size.

    python benchmarks/bench_attention.py [--json OUT] [--quick]

Forward + backward, B=4, C=96, 56x56, 3 heads, K=7 (a NAT-style stage-1 layer).
Memory: each map size runs in its own subprocess (peak RSS, reset after
the imports), so sizes do not pollute each other. Run on an idle
machine: with 2 cores anything else running skews the ratios.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import warnings

import torch

warnings.filterwarnings('ignore')

ENCODINGS = {
    'none': None,
    'bias table': dict(type='RelativeBiasTable'),
    'quadratic': dict(type='QuadraticEncoding'),
    'relative keys': dict(type='RelativeKeys'),
    'rope (axial)': dict(type='RoPE'),
    'log-cpb': dict(type='LogCPB'),
}


def timeit(fn, x, reps, warmup=2):
    for _ in range(warmup):
        fn(x).sum().backward()
    best = []
    for _ in range(reps):
        t = time.perf_counter()
        fn(x).sum().backward()
        best.append(time.perf_counter() - t)
    best.sort()
    return best[len(best) // 2]  # median


def build_layer(enc, backend='auto', kernel=7, C=96, heads=3):
    from convattn_mm.models.layers import RelPosAttention
    return RelPosAttention(C, heads, kernel_size=kernel, pos_encoding=enc,
                           backend=backend)


def speed(args):
    from mmpretrain.models.utils import ShiftWindowMSA
    B, C, S, heads, K = 4, 96, 56, 3, 7
    torch.manual_seed(0)
    x_nchw = torch.randn(B, C, S, S, requires_grad=True)
    x_nhwc = torch.randn(B, S, S, C, requires_grad=True)
    x_tok = torch.randn(B, S * S, C, requires_grad=True)
    conv = torch.nn.Conv2d(C, C, 3, padding=1)
    swin = ShiftWindowMSA(C, heads, window_size=K, shift_size=K // 2)
    reps = 5 if args.quick else 15
    rows = []
    t_conv = timeit(conv, x_nchw, reps)
    t_swin = timeit(lambda t: swin(t, (S, S)), x_tok, reps)
    rows.append(('Conv2d 3x3', '-', t_conv))
    rows.append(('Conv2d 7x7', '-',
                 timeit(torch.nn.Conv2d(C, C, 7, padding=3), x_nchw, reps)))
    rows.append(('ShiftWindowMSA (w7, shifted)', '-', t_swin))
    backends = ['fused_cpu', 'gather']
    for name, enc in ENCODINGS.items():
        for backend in backends:
            if args.quick and (backend == 'gather' and name != 'bias table'):
                continue
            layer = build_layer(enc, backend)
            rows.append((f'RelPosAttention K=7, {name}', backend,
                         timeit(layer, x_nhwc, reps)))
    layer = build_layer(dict(type='RelativeBiasTable'), kernel='global')
    rows.append(('RelPosAttention global, bias table', 'fused_cpu',
                 timeit(layer, x_nhwc, max(3, reps // 3))))
    out = []
    print(f'\nforward+backward, B={B}, C={C}, {S}x{S}, {heads} heads, K={K},'
          f' {torch.get_num_threads()} threads (median of {reps})')
    print(f'{"layer":44s} {"backend":10s} {"ms":>8s} {"/conv3x3":>9s} '
          f'{"/swin":>7s}')
    for name, backend, t in rows:
        print(f'{name:44s} {backend:10s} {1e3 * t:8.1f} {t / t_conv:9.2f} '
              f'{t / t_swin:7.2f}')
        out.append(dict(layer=name, backend=backend, ms=1e3 * t,
                        ratio_conv3x3=t / t_conv, ratio_swin=t / t_swin))
    return out


MEM_SCRIPT = '''
import sys, torch, warnings
warnings.filterwarnings('ignore')
sys.path.insert(0, {root!r})
from benchmarks.bench_attention import build_layer


def status(key):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024  # MiB


S = int(sys.argv[1])
torch.set_num_threads(2)
layer = build_layer(dict(type='RelativeBiasTable'))
layer(torch.randn(1, 8, 8, 96)).sum().backward()  # warm up (kernel, caches)
x = torch.randn(4, S, S, 96, requires_grad=True)
base = status('VmRSS')
with open('/proc/self/clear_refs', 'w') as f:  # reset the peak (VmHWM)
    f.write('5')
layer(x).sum().backward()
print(base, status('VmHWM'))
'''


def memory(args):
    """Peak resident memory added by one fwd+bwd, per map size, each in its
    own process: the peak is reset (``/proc/self/clear_refs``) after the
    imports and a warm-up, so only the layer's own tensors count."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sizes = (56, 112) if args.quick else (56, 112, 224)
    rows = []
    for S in sizes:
        proc = subprocess.run(
            [sys.executable, '-c', MEM_SCRIPT.format(root=root), str(S)],
            capture_output=True, text=True, check=True)
        base, peak = (float(v) for v in proc.stdout.split()[-2:])
        rows.append(dict(size=S, tokens=4 * S * S, peak_mib=peak,
                         added_mib=peak - base))
    print('\npeak memory added by one fwd+bwd, B=4, C=96, K=7, bias table '
          '(own process per size)')
    print(f'{"map":>8s} {"tokens":>8s} {"peak MiB":>9s} {"added MiB":>10s} '
          f'{"x prev":>7s}')
    prev = None
    for r in rows:
        grow = '' if prev is None else f'{r["added_mib"] / prev:7.2f}'
        print(f'{r["size"]:>5d}^2 {r["tokens"]:>8d} {r["peak_mib"]:9.0f} '
              f'{r["added_mib"]:10.0f} {grow}')
        prev = r['added_mib']
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', help='write results here')
    parser.add_argument('--quick', action='store_true',
                        help='fewer repetitions and sizes (a smoke run)')
    parser.add_argument('--skip-memory', action='store_true')
    args = parser.parse_args()
    result = dict(threads=torch.get_num_threads(), torch=torch.__version__,
                  speed=speed(args))
    if not args.skip_memory:
        result['memory'] = memory(args)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)),
                    exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
        print(f'\nwrote {args.json}')


if __name__ == '__main__':
    main()
