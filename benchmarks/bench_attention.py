"""Benchmark RelPosAttention on the CPU against Conv2d 3x3 and Swin's
ShiftWindowMSA, in one process, as ratios; and peak memory per map size.

    python benchmarks/bench_attention.py [--json OUT] [--quick] [--check]

B=4, C=96, 56x56, 3 heads, K=7 (a NAT-style stage-1 layer), forward + backward
(``train``) and forward under ``no_grad`` (``infer``) separately. Every layer
runs once per round, rounds interleaved, so load that comes and goes hits
all alike; each ratio is taken per round and printed as its median and
min-max over the rounds. Conv2d runs in its fastest memory layout
(contiguous or channels_last, chosen by timing both; the choice is
printed). ``--check`` exits 1 when a target ratio (``TARGETS``) is missed:
a release check for an idle machine, not a CI test.

Memory: each map size runs in its own subprocess (peak RSS, reset after
the imports), so sizes do not pollute each other.
"""
import argparse
import os
import os.path as osp
import subprocess
import sys
import warnings

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import (check_targets, fastest_layout, fmt_spread,  # noqa: E402
                     interleaved, ratio_spread, spread, write_json)

warnings.filterwarnings('ignore')

ENCODINGS = {
    'none': None,
    'bias table': dict(type='RelativeBiasTable'),
    'quadratic': dict(type='QuadraticEncoding'),
    'relative keys': dict(type='RelativeKeys'),
    'rope (axial)': dict(type='RoPE'),
    'log-cpb': dict(type='LogCPB'),
}
MODES = ('train', 'infer')
CONV3, SWIN, BIAS = 'Conv2d 3x3', 'ShiftWindowMSA (w7, shifted)', \
    'RelPosAttention K=7, bias table'
#: (numerator, denominator, bound): median ratio <= bound, in every mode
TARGETS = [(BIAS, CONV3, 0.8), (BIAS, SWIN, 0.7)] + [
    (f'RelPosAttention K=7, {name}', BIAS, 1.2) for name in ENCODINGS
    if name != 'bias table'
]


def build_layer(enc, backend='auto', kernel=7, C=96, heads=3):
    from convattn_mm.models.layers import RelPosAttention
    return RelPosAttention(C, heads, kernel_size=kernel, pos_encoding=enc,
                           backend=backend)


def step(fn, x, mode):
    """One timed call: forward + backward (train) or no-grad forward. The
    backward starts from a fixed dense gradient, as in a network (the
    gradient of ``.sum()`` is an expanded tensor that some layers copy)."""
    if mode == 'train':
        with torch.no_grad():
            grad = torch.randn_like(fn(x))
        return lambda: fn(x).backward(grad)

    def infer():
        with torch.no_grad():
            fn(x)

    return infer


def conv_candidates(conv, x, mode):
    """``{layout: step}`` of a conv in both memory layouts."""
    cl = torch.channels_last
    conv_cl = torch.nn.Conv2d(conv.in_channels, conv.out_channels,
                              conv.kernel_size, padding=conv.padding)
    conv_cl.load_state_dict(conv.state_dict())
    conv_cl = conv_cl.to(memory_format=cl)
    x_cl = x.detach().to(memory_format=cl).requires_grad_(x.requires_grad)
    return {'contiguous': step(conv, x, mode),
            'channels_last': step(conv_cl, x_cl, mode)}


def speed(args):
    from mmpretrain.models.utils import ShiftWindowMSA
    B, C, S, heads, K = 4, 96, 56, 3, 7
    torch.manual_seed(0)
    x_nchw = torch.randn(B, C, S, S, requires_grad=True)
    x_nhwc = torch.randn(B, S, S, C, requires_grad=True)
    x_tok = torch.randn(B, S * S, C, requires_grad=True)
    swin = ShiftWindowMSA(C, heads, window_size=K, shift_size=K // 2)
    rounds = 3 if args.quick else args.rounds
    result = {}
    for mode in MODES:
        fns, layouts = {}, {}
        convs = [(CONV3, 3)] + ([] if args.quick else [('Conv2d 7x7', 7)])
        for name, k in convs:
            conv = torch.nn.Conv2d(C, C, k, padding=k // 2)
            cands = conv_candidates(conv, x_nchw, mode)
            layout, probe = fastest_layout(cands)
            layouts[name] = dict(chosen=layout, probe_ms={
                k: 1e3 * v for k, v in probe.items()})
            fns[name] = cands[layout]
        fns[SWIN] = step(lambda t: swin(t, (S, S)), x_tok, mode)
        for name, enc in ENCODINGS.items():
            fns[f'RelPosAttention K=7, {name}'] = step(
                build_layer(enc, 'fused_cpu'), x_nhwc, mode)
        if args.extra:
            fns['RelPosAttention K=7, bias table, gather'] = step(
                build_layer(ENCODINGS['bias table'], 'gather'), x_nhwc, mode)
            fns['RelPosAttention global, bias table'] = step(
                build_layer(ENCODINGS['bias table'], kernel='global'),
                x_nhwc, mode)
        times = interleaved(fns, rounds, inner=args.inner)
        rows = []
        for name in fns:
            rows.append(dict(
                layer=name, layout=layouts.get(name, {}).get('chosen', '-'),
                ms={k: 1e3 * v for k, v in spread(times[name]).items()},
                ratio_conv3x3=ratio_spread(times, name, CONV3),
                ratio_swin=ratio_spread(times, name, SWIN),
                ratio_bias_table=ratio_spread(times, name, BIAS)))
        result[mode] = dict(rows=rows, conv_layouts=layouts)
        what = ('forward+backward' if mode == 'train' else
                'forward, no_grad')
        print(f'\n{what} ({mode}), B={B}, C={C}, {S}x{S}, {heads} heads, '
              f'K={K}, {torch.get_num_threads()} threads, {rounds} '
              f'interleaved rounds (best of {args.inner} per round); '
              f'ratios: median (min-max) over rounds')
        for name, lay in layouts.items():
            probe = ', '.join(f'{k} {v:.1f} ms'
                              for k, v in lay['probe_ms'].items())
            print(f'  {name}: fastest layout {lay["chosen"]} ({probe})')
        print(f'{"layer":44s} {"ms":>7s} {"/ Conv2d 3x3":>18s} '
              f'{"/ ShiftWindowMSA":>18s} {"/ bias table":>18s}')
        for r in rows:
            print(f'{r["layer"]:44s} {r["ms"]["median"]:7.1f} '
                  f'{fmt_spread(r["ratio_conv3x3"]):>18s} '
                  f'{fmt_spread(r["ratio_swin"]):>18s} '
                  f'{fmt_spread(r["ratio_bias_table"]):>18s}')
    return result


def targets(result):
    """``check_targets`` input: every target in every mode."""
    key = {CONV3: 'ratio_conv3x3', SWIN: 'ratio_swin',
           BIAS: 'ratio_bias_table'}
    checks = []
    for mode in MODES:
        rows = {r['layer']: r for r in result[mode]['rows']}
        for num, den, bound in TARGETS:
            checks.append((f'{mode}: {num} / {den}', rows[num][key[den]],
                           '<=', bound))
    return checks


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', help='write results here')
    parser.add_argument('--quick', action='store_true',
                        help='3 rounds, fewer layers and sizes (a smoke run)')
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--inner', type=int, default=3,
                        help='calls per layer per round (the best counts)')
    parser.add_argument('--extra', action='store_true',
                        help='also the gather backend and global attention '
                        '(slow)')
    parser.add_argument('--skip-memory', action='store_true')
    parser.add_argument('--check', action='store_true',
                        help='exit 1 when a target ratio is missed')
    args = parser.parse_args(argv)
    result = dict(threads=torch.get_num_threads(), torch=torch.__version__,
                  speed=speed(args))
    missed = check_targets(targets(result['speed']))
    result['missed_targets'] = missed
    if not args.skip_memory:
        result['memory'] = memory(args)
    if args.json:
        write_json(args.json, result)
    return 1 if args.check and missed else 0


if __name__ == '__main__':
    sys.exit(main())
