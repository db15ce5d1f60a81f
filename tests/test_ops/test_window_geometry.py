"""Window geometry against brute-force enumerations of the documented rules
(:mod:`convattn_mm.ops.windows`): per-axis windows, flat neighbour and table
indices, table offsets, query indices, the fit rule and argument errors."""
import itertools
import re

import pytest
import torch

from convattn_mm.ops.windows import (MASKED, ZERO, AxisWindow, WindowSpec,
                                     check_odd_kernel, make_window,
                                     table_radius, to_tuple, window_extent)


def _axis_brute(L, K, d, rule, s):
    """Per output query ``i`` (``0, s, 2s, ...``) the list of its ``K``
    window slots ``(key, in_map, table_index)``, from the module docstring."""
    rows = []
    for i in range(0, L, s):
        if rule == 'shift':
            group = [k for k in range(L) if k % d == i % d]
            j = group.index(i)
            # K consecutive group members, centred on i, moved inward
            starts = range(0, len(group) - K + 1)
            start = min(starts, key=lambda a: abs(a + K // 2 - j))
            keys = group[start:start + K]
            r = K - 1
        else:
            r = (K - 1) // 2
            keys = [i + d * t for t in range(-r, r + 1)]
        rows.append([(k, 0 <= k < L, (k - i) // d + r) for k in keys])
    return rows


def _spec_brute(spatial, kernel, dil, border, stride):
    """Flat ``nbr`` and ``table`` of :meth:`WindowSpec.neighbors` by loops:
    queries row-major over the output map, slots row-major over the kernel,
    keys row-major over the map, table entries row-major over the table."""
    per_axis, tsizes = [], []
    for L, K, d, s in zip(spatial, kernel, dil, stride):
        rule = 'shift' if K == 'global' else border
        K, d = (L, 1) if K == 'global' else (K, d)
        per_axis.append(_axis_brute(L, K, d, rule, s))
        tsizes.append(2 * (K - 1 if rule == 'shift' else (K - 1) // 2) + 1)
    marker = MASKED if border == 'mask' else ZERO
    nbr, table = [], []
    for rows in itertools.product(*per_axis):
        n_row, t_row = [], []
        for slots in itertools.product(*rows):
            key = tab = 0
            ok = True
            for L, T, (k, valid, t) in zip(spatial, tsizes, slots):
                key, tab, ok = key * L + k, tab * T + t, ok and valid
            n_row.append(key if ok else marker)
            t_row.append(tab)
        nbr.append(n_row)
        table.append(t_row)
    return nbr, table


# (spatial, kernel_size, dilation, border, query_stride): ranks 1-3, every
# border, dilation, strides, global axes, windows that fill the map
GEOMETRY = [
    ((9, ), 3, 1, 'shift', 1),
    ((9, ), 5, 1, 'mask', 1),
    ((9, ), 5, 1, 'zeros', 1),
    ((11, ), 3, 2, 'shift', 1),
    ((11, ), 3, 3, 'mask', 2),
    ((10, ), 5, 2, 'zeros', 3),
    ((10, ), 3, 3, 'shift', 2),
    ((7, ), 7, 1, 'shift', 1),
    ((7, ), 7, 1, 'mask', 1),
    ((7, ), 'global', 3, 'zeros', 2),
    ((6, 7), 3, 1, 'shift', 1),
    ((6, 7), (3, 5), (2, 1), 'shift', (1, 2)),
    ((6, 7), (5, 3), (1, 2), 'mask', (2, 1)),
    ((6, 7), 3, (2, 3), 'zeros', 2),
    ((6, 7), ('global', 3), 2, 'mask', 1),
    ((5, 6), (3, 'global'), 1, 'zeros', (2, 1)),
    ((5, 4, 6), 3, 1, 'shift', 1),
    ((5, 4, 6), (3, 1, 5), (1, 2, 1), 'mask', (1, 1, 2)),
    ((5, 4, 6), 3, (2, 1, 2), 'zeros', (2, 1, 1)),
    ((4, 5, 3), ('global', 3, 'global'), 1, 'shift', (1, 2, 1)),
]


@pytest.mark.parametrize('spatial,K,d,border,s', GEOMETRY)
def test_neighbors_match_brute_force(spatial, K, d, border, s):
    """Flat neighbour indices, out-of-map markers and table indices equal a
    loop over the documented border rules, as contiguous int32."""
    rank = len(spatial)
    spec = make_window(spatial, K, d, border, s)
    kernel, dil, stride = (to_tuple(x, rank, 'x', allow_global=True)
                           for x in (K, d, s))
    nbr_bf, table_bf = _spec_brute(spatial, kernel, dil, border, stride)
    nbr, table = spec.neighbors()
    assert nbr.dtype == table.dtype == torch.int32
    assert nbr.is_contiguous() and table.is_contiguous()
    assert nbr.tolist() == nbr_bf
    assert table.tolist() == table_bf
    # the table indices point at the entry holding each key's offset
    offsets = spec.table_offsets()
    coords = torch.tensor(list(itertools.product(*map(range, spatial))))
    queries = coords[spec.query_index()]
    ok = nbr >= 0
    delta = coords[nbr.long().clamp(min=0)] - queries[:, None]
    assert torch.equal(offsets[table.long()][ok], delta[ok])


@pytest.mark.parametrize('spatial,K,d,border,s', GEOMETRY)
def test_spec_shapes_and_query_index(spatial, K, d, border, s):
    """Output map ``ceil(L/s)``, table ``2r+1`` per axis, window size, the
    flat input index of every strided query, and the per-axis windows
    (global axes: the whole axis under 'shift' with dilation 1)."""
    rank = len(spatial)
    spec = make_window(spatial, K, d, border, s)
    kernel, dil, stride = (to_tuple(x, rank, 'x', allow_global=True)
                           for x in (K, d, s))
    axes = tuple(
        AxisWindow(L, L, 1, 'shift', st) if k == 'global' else
        AxisWindow(L, k, dd, border, st)
        for L, k, dd, st in zip(spatial, kernel, dil, stride))
    assert spec == WindowSpec(axes, border)
    assert spec.rank == rank
    assert spec.in_shape == tuple(spatial)
    assert spec.out_shape == tuple(-(-L // st)
                                   for L, st in zip(spatial, stride))
    assert spec.strided == any(st > 1 for st in stride)
    assert spec.table_shape == tuple(2 * a.radius + 1 for a in axes)
    assert spec.window_size == len(spec.neighbors()[0][0])
    queries = [
        q for q in itertools.product(*map(range, spatial))
        if all(c % st == 0 for c, st in zip(q, stride))
    ]
    flat = [sum(c * int(torch.tensor(spatial[ax + 1:]).prod())
                for ax, c in enumerate(q)) for q in queries]
    index = spec.query_index()
    assert index.dtype == torch.long
    assert index.tolist() == flat


@pytest.mark.parametrize('spatial,K,d,border,s', GEOMETRY)
def test_table_offsets_enumerate_every_offset_row_major(
        spatial, K, d, border, s):
    """Entry ``t`` of an axis holds ``δ = (t - r)·d``, combined row-major
    over the axes, as long."""
    spec = make_window(spatial, K, d, border, s)
    per_axis = [[(t - a.radius) * a.dilation for t in range(a.table_size)]
                for a in spec.axes]
    offsets = spec.table_offsets()
    assert offsets.dtype == torch.long
    assert offsets.tolist() == [list(o) for o in itertools.product(*per_axis)]


@pytest.mark.parametrize('L,K,d,rule,s', [
    (9, 3, 1, 'shift', 1), (11, 5, 2, 'shift', 2), (10, 3, 3, 'shift', 1),
    (9, 5, 1, 'mask', 1), (11, 3, 2, 'zeros', 2), (8, 1, 1, 'mask', 3),
    (6, 6, 1, 'shift', 1), (8, 4, 2, 'shift', 1)
])
def test_axis_window_slots(L, K, d, rule, s):
    """:meth:`AxisWindow.neighbors`: in-map keys, validity and table index
    per slot (even ``K`` for a global axis of even length); every 'shift'
    key is in the map."""
    win = AxisWindow(L, K, d, rule, s)
    key, valid, table = win.neighbors()
    rows = _axis_brute(L, K, d, rule, s)
    assert key.shape == valid.shape == table.shape == (len(rows), K)
    assert valid.dtype == torch.bool
    assert key.dtype == table.dtype == torch.long
    assert valid.tolist() == [[ok for _, ok, _ in r] for r in rows]
    assert key[valid].tolist() == [k for r in rows for k, ok, _ in r if ok]
    assert table.tolist() == [[t for _, _, t in r] for r in rows]
    assert table.min() >= 0 and table.max() <= 2 * win.radius
    if rule == 'shift':
        assert valid.all()
    assert win.out_length == len(rows)
    assert win.table_size == 2 * win.radius + 1


def test_table_radius_and_window_extent():
    """``r = K-1`` and extent ``K·d`` under 'shift'; ``r = (K-1)/2`` and
    extent ``(K-1)·d + 1`` under 'mask' and 'zeros'."""
    for K, d in itertools.product((1, 3, 5, 7), (1, 2, 3)):
        assert table_radius(K, 'shift') == K - 1
        assert window_extent(K, d, 'shift') == K * d
        for rule in ('mask', 'zeros'):
            assert table_radius(K, rule) == (K - 1) // 2
            assert window_extent(K, d, rule) == (K - 1) * d + 1
    assert table_radius(4, 'shift') == 3  # global axis of even length


@pytest.mark.parametrize('border', ['shift', 'mask', 'zeros'])
def test_fit_rule_boundary(border):
    """A window fits exactly when its extent is at most the map; one pixel
    less raises, naming the rule and both sides of the comparison."""
    for K, d in [(3, 1), (3, 2), (5, 2), (5, 3), (1, 4)]:
        need = window_extent(K, d, border)
        spec = make_window((need, need + 3), K, d, border)
        assert spec.in_shape == (need, need + 3)
        if border == 'shift':
            msg = (f'kernel_size={K} with dilation={d} does not fit the map '
                   f'({need - 1}, {need + 3}) on axis 0: the shift border '
                   f'needs kernel_size * dilation <= size ({K} * {d} > '
                   f'{need - 1})')
        else:
            msg = (f'kernel_size={K} with dilation={d} does not fit the map '
                   f'({need - 1}, {need + 3}) on axis 0: border={border!r} '
                   f'needs (kernel_size - 1) * dilation + 1 <= size '
                   f'({need} > {need - 1})')
        if need > 1:
            with pytest.raises(ValueError, match='^' + re.escape(msg) + '$'):
                make_window((need - 1, need + 3), K, d, border)


def test_fit_rule_names_the_failing_axis():
    """Each axis is checked with its own kernel and dilation; the message
    names the axis and repeats the arguments as given."""
    msg = ('kernel_size=(3, 5) with dilation=(1, 2) does not fit the map '
           '(9, 8) on axis 1: the shift border needs kernel_size * dilation '
           '<= size (5 * 2 > 8)')
    with pytest.raises(ValueError, match='^' + re.escape(msg) + '$'):
        make_window((9, 8), (3, 5), (1, 2), 'shift')
    msg = ("kernel_size=[5, 3, 3] with dilation=2 does not fit the map "
           "(9, 6, 4) on axis 2: border='mask' needs (kernel_size - 1) * "
           "dilation + 1 <= size (5 > 4)")
    with pytest.raises(ValueError, match='^' + re.escape(msg) + '$'):
        make_window([9, 6, 4], [5, 3, 3], 2, 'mask')


def test_global_window_fits_any_map_and_ignores_dilation():
    """'global' (all or some axes) is a 'shift' window of the whole axis with
    dilation 1, on any map and with any border; other axes keep theirs."""
    for border in ('shift', 'mask', 'zeros'):
        spec = make_window((2, 1), 'global', 5, border, 2)
        assert spec.axes == (AxisWindow(2, 2, 1, 'shift', 2),
                             AxisWindow(1, 1, 1, 'shift', 2))
        assert spec.is_global
        spec = make_window((3, 7), ('global', 3), (4, 2), border)
        assert spec.axes == (AxisWindow(3, 3, 1, 'shift'),
                             AxisWindow(7, 3, 2, border))
        assert not spec.is_global
    assert make_window((5, ), 5, 1, 'shift').is_global
    assert not make_window((5, ), 5, 1, 'mask').is_global


def test_make_window_defaults():
    """Dilation 1, the 'shift' border and query stride 1 by default."""
    spec = make_window((8, 5), 3)
    assert spec.border == 'shift'
    assert spec.axes == (AxisWindow(8, 3, 1, 'shift', 1),
                         AxisWindow(5, 3, 1, 'shift', 1))
    assert make_window((6, ), 3, query_stride=2).axes == (AxisWindow(
        6, 3, 1, 'shift', 2), )


def test_border_must_be_a_known_rule():
    """An unknown border names the value and the three rules."""
    msg = ("border='reflect' is not supported; choose one of "
           "['mask', 'shift', 'zeros']")
    with pytest.raises(ValueError, match='^' + re.escape(msg) + '$'):
        make_window((8, 8), 3, 1, 'reflect')


@pytest.mark.parametrize('kwargs,exc,msg', [
    (dict(kernel_size=4), ValueError,
     "kernel_size=4: window sizes must be odd (got 4 on axis 0); "
     "kernel_size=4: window sizes must be odd or 'global'"),
    (dict(kernel_size=(3, 'local')), TypeError,
     "kernel_size=(3, 'local'): each entry must be a positive int or "
     "'global'"),
    (dict(dilation=0), ValueError,
     'dilation=0: each entry must be a positive int'),
    (dict(dilation='global'), TypeError,
     "dilation='global': each entry must be a positive int"),
    (dict(dilation=(1, 2, 1)), ValueError,
     'dilation=(1, 2, 1) has 3 entries, expected 2 (one per spatial axis) '
     'or a positive int'),
    (dict(query_stride=(1, True)), TypeError,
     'query_stride=(1, True): each entry must be a positive int'),
    (dict(query_stride=-1), ValueError,
     'query_stride=-1: each entry must be a positive int'),
    (dict(kernel_size=[3]), ValueError,
     "kernel_size=[3] has 1 entries, expected 2 (one per spatial axis) or a "
     "positive int or 'global'"),
])
def test_make_window_argument_errors(kwargs, exc, msg):
    """Each bad argument raises with its name, value and what is allowed."""
    args = dict(kernel_size=3, dilation=1, query_stride=1)
    args.update(kwargs)
    with pytest.raises(exc, match='^' + re.escape(msg) + '$'):
        make_window((8, 8), border='mask', **args)


def test_to_tuple_broadcasts_and_accepts_sequences():
    """Ints broadcast; lists and tuples of the right length become tuples;
    'global' passes only when allowed; bools and floats are rejected."""
    assert to_tuple(2, 3, 'x') == (2, 2, 2)
    assert to_tuple([1, 4], 2, 'x') == (1, 4)
    assert isinstance(to_tuple([1, 4], 2, 'x'), tuple)
    assert to_tuple('global', 2, 'x', allow_global=True) == ('global', ) * 2
    assert to_tuple((1, 'global'), 2, 'x', True) == (1, 'global')
    assert to_tuple(1, 1, 'x') == (1, )
    for bad in (True, 2.0, None, (2, 3.0)):
        with pytest.raises(TypeError, match=r'^x=.*: each entry must be a '
                           r'positive int$'):
            to_tuple(bad, 2, 'x')
    with pytest.raises(TypeError, match=r"^x='global': each entry must be a "
                       r"positive int$"):
        to_tuple('global', 2, 'x')
    for bad in ((1, 0), ('global', 0)):
        with pytest.raises(ValueError, match=r"^x=\(.*, 0\): each entry must "
                           r"be a positive int or 'global'$"):
            to_tuple(bad, 2, 'x', allow_global=True)
    with pytest.raises(TypeError, match=r"^x=\('global', 1.5\): each entry "
                       r"must be a positive int or 'global'$"):
        to_tuple(('global', 1.5), 2, 'x', allow_global=True)


def test_check_odd_kernel_defaults():
    """The name defaults to 'kernel_size' and 'global' is allowed unless
    told otherwise; odd sizes on every axis pass unchanged."""
    assert check_odd_kernel((1, 'global', 7), 3) == (1, 'global', 7)
    assert check_odd_kernel([5, 3], 2, allow_global=False) == (5, 3)
    msg = ("kernel_size=(3, 3, 2): window sizes must be odd (got 2 on axis "
           "2); kernel_size=(3, 3, 2): window sizes must be odd or 'global'")
    with pytest.raises(ValueError, match='^' + re.escape(msg) + '$'):
        check_odd_kernel((3, 3, 2), 3)


def test_tables_are_cached_per_window():
    """Equal windows share one cached neighbour table and one offset table;
    'cpu' (string or device) is the cached CPU table itself."""
    a = make_window((6, 7), 3, 2, 'zeros', 2)
    b = make_window((6, 7), 3, 2, 'zeros', 2)
    assert a == b and a is not b
    tables = a.neighbors()
    assert b.neighbors() is tables
    assert a.neighbors('cpu') is tables
    assert a.neighbors(torch.device('cpu')) is tables
    assert a.table_offsets() is b.table_offsets()


def test_tables_move_to_the_requested_device():
    """``device`` places the query index and neighbour tables there (the
    'meta' device stands in for an accelerator)."""
    spec = make_window((5, 6), 3, 1, 'mask', (1, 2))
    assert spec.query_index().device.type == 'cpu'
    index = spec.query_index('meta')
    assert index.device.type == 'meta' and index.shape == (15, )
    nbr, table = spec.neighbors('meta')
    assert nbr.device.type == table.device.type == 'meta'
    assert nbr.dtype == table.dtype == torch.int32
    assert nbr.shape == table.shape == (15, 9)
    assert spec.neighbors(torch.device('meta'))[0].device.type == 'meta'
