"""Shared helpers of the benchmarks: confidence intervals, tables, JSON."""
import json
import math
import os
import os.path as osp

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
