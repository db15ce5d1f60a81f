"""Shared helpers of the benchmarks: interleaved timing, ratio spreads,
layout choice, target checks, confidence intervals, tables, JSON."""
import json
import math
import os
import os.path as osp
import statistics
import time

# two-sided 95 % Student t quantiles, by degrees of freedom
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447,
         7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def mean_ci(values):
    """``(mean, half-width of the 95 % CI)``; half-width nan for n = 1."""
    n = len(values)
    m = sum(values) / n
    if n < 2:
        return m, float('nan')
    sd = math.sqrt(sum((v - m)**2 for v in values) / (n - 1))
    return m, _T975.get(n - 1, 1.96) * sd / math.sqrt(n)


def print_table(headers, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows))
              for i, h in enumerate(headers)]
    line = ' | '.join(str(h).ljust(w) for h, w in zip(headers, widths))
    print(line)
    print('-+-'.join('-' * w for w in widths))
    for r in rows:
        print(' | '.join(str(c).ljust(w) for c, w in zip(r, widths)))


def write_json(path, data):
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(data, f, indent=2)
    print(f'wrote {path}')


def time_call(fn, inner=1):
    """Seconds per call of ``fn()``: the fastest of ``inner`` calls."""
    best = float('inf')
    for _ in range(inner):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def interleaved(fns, rounds, inner=1, warmup=1):
    """Time every callable of ``fns`` (name -> fn) in ``rounds`` rounds; in
    each round every fn runs once after the other (best of ``inner``
    calls), so load that comes and goes hits all of them alike.

    Returns:
        ``{name: [seconds per round]}``.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(time_call(fn, inner))
    return times


def spread(values):
    """``dict(median, min, max)`` of a list."""
    return dict(median=statistics.median(values), min=min(values),
                max=max(values))


def ratio_spread(times, num, den):
    """Median and min-max of the per-round ratios ``times[num] /
    times[den]`` (both timed in the same rounds)."""
    return spread([a / b for a, b in zip(times[num], times[den])])


def fmt_spread(s, digits=2):
    """``'1.23 (1.10-1.40)'``: median (min-max)."""
    f = f'{{:.{digits}f}}'
    return (f'{f.format(s["median"])} ({f.format(s["min"])}-'
            f'{f.format(s["max"])})')


def fastest_layout(candidates, rounds=3, inner=1):
    """Pick the fastest of ``{layout: fn}`` by interleaved timing.

    Returns:
        ``(layout, {layout: median seconds})``.
    """
    times = interleaved(candidates, rounds, inner)
    med = {k: statistics.median(v) for k, v in times.items()}
    return min(med, key=med.get), med


def check_targets(checks):
    """Print each target and whether the median met it.

    Args:
        checks: list of ``(what, spread dict, op, bound)`` with ``op`` one
            of ``'<='``, ``'>='``.
    Returns:
        list of the missed ``what``s (empty when all are met).
    """
    missed = []
    print('\ntargets (median of the per-round ratios):')
    for what, s, op, bound in checks:
        ok = s['median'] <= bound if op == '<=' else s['median'] >= bound
        print(f'  {"met   " if ok else "MISSED"} {what}: {fmt_spread(s)} '
              f'(target {op} {bound})')
        if not ok:
            missed.append(what)
    return missed
