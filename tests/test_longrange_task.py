"""The long-range benchmark's task (benchmarks/bench_longrange.py): its
geometry, and the claim that a model whose windows cannot cover both marks
gives the same logits for both labels."""
import os.path as osp
import sys

import pytest
import torch

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(__file__)), 'benchmarks'))
from bench_longrange import Net, geometry, make_data, parse_window  # noqa

H, W, D = 3, 25, 7


def test_make_data_geometry():
    x, y, cols = make_data(400, H, W, D, seed=0, noise=0.0)
    assert x.shape == (400, 3, 2 * H, 2 * W)
    assert 150 < int(y.sum()) < 250
    red, green = cols[:, 0], cols[:, 1]
    assert ((green - red).abs() == D).all()
    assert torch.equal((red < green).long(), y)
    assert cols.min() >= D and cols.max() <= W - 1 - D
    # each mark is a full-height line one token (2 px) wide, nothing else
    i = torch.arange(400)
    assert (x[i, 0, :, 2 * red] == 1).all()
    assert (x[i, 1, :, 2 * green + 1] == 1).all()
    assert int((x != 0).sum()) == 400 * 2 * 2 * 2 * H


def test_make_data_rejects_bad_geometry():
    with pytest.raises(ValueError, match='width=21 tokens: the marks need '
                       'width >= 3 \\* distance \\+ 1 = 22'):
        make_data(2, H, 3 * D, D, seed=0)


def test_geometry_rows():
    assert geometry(3, 2, W, D) == (3, 5, 0, 'none')
    assert geometry(5, 2, W, D) == (5, 9, 0, 'stack only')
    assert geometry(9, 2, W, D) == (9, 17, 2, 'one window')
    assert geometry('global', 2, W, D) == (W, W, W, 'one window')
    # dilated: offsets -7, 0, 7 (queries on either mark see the other)
    assert geometry(3, 2, W, D, dilation=7) == (15, 25, 2, 'one window')
    assert geometry(3, 2, W, D, dilation=2) == (5, 9, 0, 'none')
    assert parse_window('3d7') == (3, 7)
    assert parse_window('global') == ('global', 1)
    with pytest.raises(ValueError, match="--windows entry '3x'"):
        parse_window('3x')


def _swap_logits(window, layers, dilation=1):
    """Logits of noise-free images, and of the same images with the two
    marks' colours swapped (every label flipped)."""
    torch.manual_seed(0)
    x, _, _ = make_data(6, H, W, D, seed=1, noise=0.0)
    swapped = x[:, [1, 0, 2]]
    net = Net(window, layers, dims=16, heads=2,
              dilation=dilation).double().eval()
    # random weights everywhere (the bias network's last layer starts at 0)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    with torch.no_grad():
        a, b = net(x.double()), net(swapped.double())
        no_green = x.clone()
        no_green[:, 1] = 0
        # the model does see the marks: dropping one changes the logits
        assert (net(no_green.double()) - a).abs().max() > 1e-3
    return a, b


def test_windows_that_cannot_cover_both_marks_ignore_their_order():
    # K=3: stack receptive field 5 < 7, and the 7-token margin is at least
    # twice its radius, so no token that a mark reaches sees a border
    a, b = _swap_logits(3, 2)
    assert (a - b).abs().max() < 1e-12  # float64 rounding only


@pytest.mark.parametrize('window,dilation', [(5, 1), (9, 1), (3, 7),
                                             ('global', 1)])
def test_windows_that_reach_both_marks_see_their_order(window, dilation):
    a, b = _swap_logits(window, 2, dilation)
    # random weights: a small effect through two hops, but far above rounding
    assert (a - b).abs().max() > 1e-8


def test_benchmark_smoke_run_writes_json(tmp_path, capsys):
    import json

    from bench_longrange import main
    out = tmp_path / 'longrange.json'
    assert main(['--quick', '--json', str(out)]) == 0
    data = json.loads(out.read_text())
    assert [r['window'] for r in data['results']] == ['3', 'global']
    assert 0 <= data['results'][0]['mean'] <= 100
    assert 'QUICK smoke run' in capsys.readouterr().out
