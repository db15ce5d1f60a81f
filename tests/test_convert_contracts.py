"""The converter's documented contracts, one by one: checkpoint layouts and
key maps, the exact error messages, the arguments each function passes on,
its documented defaults, and the report and progress text of
``convert_model`` (tiny models only)."""
import re
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn

from convattn_mm.convert import (HARD_NEG, LAYOUTS, ConversionReport,
                                 UnsupportedConvError, check_convertible,
                                 conv_to_attention, convert_model,
                                 detect_layout, load_cnn_state_dict,
                                 proj_weight, read_checkpoint, save_converted,
                                 soft_init_bound, torchvision_to_mmpretrain)
from convattn_mm.models.layers import ConvAttention, GatedConvAttention


def _conv2d(cin=3, cout=4, k=3, bias=True, **kw):
    conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias, **kw)
    if bias:
        with torch.no_grad():
            conv.bias.normal_()
    return conv


# ------------------------------------------------------------ checkpoints
def _tv_state():
    return OrderedDict([('conv1.weight', torch.randn(2, 3, 1, 1)),
                        ('bn1.weight', torch.randn(2)),
                        ('layer1.0.conv1.weight', torch.randn(2, 2, 1, 1)),
                        ('fc.weight', torch.randn(5, 2)),
                        ('fc.bias', torch.randn(5))])


def test_detect_layout_of_each_form():
    """mmengine: a dict 'state_dict'; torchvision: all four marker keys and
    no 'backbone.' key; state_dict: a non-empty dict of tensors."""
    sd = _tv_state()
    assert detect_layout(dict(state_dict=dict(sd), meta={})) == 'mmengine'
    assert detect_layout(sd) == 'torchvision'
    # a state dict whose 'state_dict' entry is no dict is a plain one
    assert detect_layout(dict(state_dict=torch.ones(1))) == 'state_dict'
    for marker in ('conv1.weight', 'bn1.weight', 'layer1.0.conv1.weight',
                   'fc.weight'):
        partial = {k: v for k, v in sd.items() if k != marker}
        assert detect_layout(partial) == 'state_dict', marker
    assert detect_layout(dict(sd, **{'backbone.x': torch.ones(1)})) == \
        'state_dict'
    assert LAYOUTS == ('mmengine', 'state_dict', 'torchvision')


def test_detect_layout_errors_name_type_and_keys():
    """A non-dict names its type; an unknown dict lists its first 8 sorted
    keys and the layouts."""
    with pytest.raises(TypeError) as err:
        detect_layout([1])
    assert str(err.value) == ('checkpoint is a list: expected a dict (a state '
                              'dict or one with a "state_dict" key)')
    keys = [f'k{i}' for i in range(10)]
    with pytest.raises(ValueError) as err:
        detect_layout({k: 1 for k in reversed(keys)})
    assert str(err.value) == (
        f'checkpoint layout not recognised (keys: {keys[:8]}...); expected '
        f"one of ['mmengine', 'state_dict', 'torchvision']")
    with pytest.raises(ValueError, match='^checkpoint layout not recognised '
                       r'\(keys: \[\]\.\.\.\)'):
        detect_layout({})


def test_torchvision_keys_map_to_mmpretrain_in_order():
    """fc.* -> head.fc.*, every other key -> backbone.*, order and tensors
    kept."""
    sd = _tv_state()
    out = torchvision_to_mmpretrain(sd)
    assert isinstance(out, OrderedDict)
    assert list(out) == ['backbone.conv1.weight', 'backbone.bn1.weight',
                         'backbone.layer1.0.conv1.weight', 'head.fc.weight',
                         'head.fc.bias']
    assert all(out[k] is v for k, v in zip(out, sd.values()))
    # only a leading 'fc.' is the classifier
    assert list(torchvision_to_mmpretrain({'xfc.w': 1})) == ['backbone.xfc.w']


def test_load_cnn_state_dict_layouts_and_module_prefix(tmp_path):
    """'module.' prefixes are stripped; an explicit layout overrides the
    detected one and is returned."""
    sd = _tv_state()
    path = str(tmp_path / 'dp.pth')
    torch.save(OrderedDict(('module.' + k, v) for k, v in sd.items()), path)
    got, layout = load_cnn_state_dict(path, layout='torchvision')
    assert layout == 'torchvision'
    assert list(got) == list(torchvision_to_mmpretrain(sd))
    for a, b in zip(got.values(), sd.values()):
        assert torch.equal(a, b)
    # DataParallel keys hide the markers: auto sees a plain state dict
    got, layout = load_cnn_state_dict(path)
    assert layout == 'state_dict' and list(got) == list(sd)
    plain = str(tmp_path / 'tv.pth')
    torch.save(sd, plain)
    got, layout = load_cnn_state_dict(plain, layout='state_dict')
    assert layout == 'state_dict' and list(got) == list(sd)
    # an mmengine file read as torchvision is mapped from its state_dict
    mm = str(tmp_path / 'mm.pth')
    torch.save(dict(meta=dict(a=1), state_dict=sd), mm)
    got, layout = load_cnn_state_dict(mm, 'torchvision')
    assert layout == 'torchvision' and 'head.fc.bias' in got
    got, layout = load_cnn_state_dict(mm)
    assert layout == 'mmengine' and list(got) == list(sd)
    # only a leading 'module.' goes
    odd = str(tmp_path / 'odd.pth')
    torch.save({'a.module.w': torch.ones(1), 'modulew': torch.ones(1)}, odd)
    assert list(load_cnn_state_dict(odd)[0]) == ['a.module.w', 'modulew']


def test_read_checkpoint_refusal_message(tmp_path):
    """A pickle with other objects: the message names the file, the reason,
    the way out and the first line of torch's error."""
    import fractions
    path = str(tmp_path / 'runner.pth')
    obj = dict(state_dict=dict(w=torch.ones(1)), hub=fractions.Fraction(1, 3))
    torch.save(obj, path)
    with pytest.raises(ValueError) as err:
        read_checkpoint(path)
    msg = str(err.value)
    assert msg.startswith(
        f"checkpoint {path!r} holds objects other than tensors, numpy "
        f"scalars and plain containers (e.g. an mmengine Runner "
        f"checkpoint's message hub), so it will not load with "
        f"weights_only=True. If you trust its source, pass trust=True "
        f"(tools/convert_cnn.py: --trust-checkpoint). Details: ")
    try:
        torch.load(path, weights_only=True)
    except Exception as e:  # torch's own reason, first line
        assert msg.endswith('Details: ' + str(e).splitlines()[0])
    assert err.value.__cause__ is None and err.value.__suppress_context__
    got = read_checkpoint(path, trust=True)
    assert got['hub'] == fractions.Fraction(1, 3)
    # trusted loads land on the CPU too
    assert got['state_dict']['w'].device.type == 'cpu'


def test_save_converted_writes_meta_and_cpu_weights(tmp_path):
    """{'meta', 'state_dict'} with the given meta (plus the content hash;
    the caller's dict untouched), readable weights-only."""
    from convattn_mm.compat import HASH_KEY, content_hash
    net = nn.Sequential(_conv2d())
    path = str(tmp_path / 'c.pth')
    meta = dict(init='exact')
    save_converted(net, path, meta=meta)
    assert meta == dict(init='exact')
    obj = read_checkpoint(path)
    assert set(obj) == {'meta', 'state_dict'}
    assert obj['meta'] == dict(init='exact', **{HASH_KEY: content_hash(obj)})
    assert list(obj['state_dict']) == ['0.weight', '0.bias']
    assert torch.equal(obj['state_dict']['0.weight'], net[0].weight)
    save_converted(net, path)
    obj = read_checkpoint(path)
    assert obj['meta'] == {HASH_KEY: content_hash(obj)}


# ------------------------------------------------------------ one conv
class _Conv4d(nn.modules.conv._ConvNd):
    def __init__(self):
        one = (1, ) * 4
        super().__init__(2, 2, (3, ) * 4, one, one, one, False, (0, ) * 4, 1,
                         False, 'zeros')


@pytest.mark.parametrize('conv, message', [
    (nn.ConvTranspose2d(3, 4, 3, padding=1),
     'transposed=True (ConvTranspose2d): transposed convolutions are not '
     'supported; convert nn.Conv1d/Conv2d/Conv3d'),
    (_Conv4d(), 'conv rank 4: only 1-3 spatial axes are supported'),
    (nn.Conv2d(3, 4, 3, padding=1, padding_mode='circular'),
     "padding_mode='circular' is not supported; only 'zeros' converts "
     "exactly (border='zeros')"),
    (nn.Conv2d(3, 4, (3, 2), padding=1),
     'kernel_size=(3, 2): even kernels have no centre offset and are not '
     'supported; use odd kernel sizes'),
    (nn.Conv2d(3, 4, (1, 3), padding='valid'),
     "padding='valid' with kernel_size=(1, 3): only 'same' padding "
     "(dilation*(kernel_size-1)/2 = (0, 1)) converts exactly"),
    (nn.Conv2d(3, 4, (3, 5), padding=(1, 1), dilation=(1, 2)),
     "padding=(1, 1) with kernel_size=(3, 5), dilation=(1, 2): only 'same' "
     "padding dilation*(kernel_size-1)/2 = (1, 4) converts exactly"),
])
def test_unsupported_conv_messages(conv, message):
    """The whole message of each refusal (an UnsupportedConvError)."""
    with pytest.raises(UnsupportedConvError) as err:
        check_convertible(conv)
    assert str(err.value) == message


def test_check_convertible_returns_rank_and_accepts_same_forms():
    """Rank 1-3; 'valid' with a 1x1 kernel and 'same' strings convert."""
    assert check_convertible(nn.Conv1d(2, 2, 3, padding=1)) == 1
    assert check_convertible(nn.Conv2d(2, 2, 3, padding=1)) == 2
    assert check_convertible(nn.Conv3d(2, 2, 3, padding=1)) == 3
    assert check_convertible(nn.Conv2d(2, 2, 1, padding='valid')) == 2
    assert check_convertible(nn.Conv2d(2, 2, (1, 5), padding='same',
                                       dilation=3)) == 2
    assert check_convertible(nn.Conv2d(2, 2, (3, 5), padding=(2, 4),
                                       dilation=2)) == 2
    # a conv flagged transposed is refused whatever its class
    conv = nn.Conv2d(2, 2, 3, padding=1)
    conv.transposed = True
    with pytest.raises(UnsupportedConvError, match=r'^transposed=True '
                       r'\(Conv2d\)'):
        check_convertible(conv)


def test_valid_1x1_conv_converts_exactly():
    """A 'valid' 1x1 conv is one head with the conv's weight and bias."""
    conv = _conv2d(3, 5, 1)
    conv.padding = 'valid'
    layer = conv_to_attention(conv)
    assert layer.num_heads == 1
    x = torch.randn(2, 3, 4, 5)
    torch.testing.assert_close(layer(x), conv(x))


def test_init_mass_must_lie_strictly_inside_the_unit_interval():
    conv = _conv2d()
    for bad in (0, 1, 0.0, 1.0, -0.1):
        with pytest.raises(ValueError) as err:
            conv_to_attention(conv, init='quadratic', init_mass=bad)
        assert str(err.value) == f'init_mass={bad!r} must lie in (0, 1)'


def test_exact_layer_settings_and_table():
    """The exact layer: one head per tap, channels-first, zeros border,
    'pad' for small maps, query stride = conv stride, position-only with a
    0/HARD_NEG table; W_o from proj_weight; bias copied."""
    conv = _conv2d(4, 6, 3, stride=2, dilation=1, groups=2)
    layer = conv_to_attention(conv, backend='gather')
    assert type(layer) is ConvAttention
    assert layer.num_heads == 9 and layer.embed_dims == 4
    assert layer.out_dims == 6 and layer.qk is None
    assert layer.kernel_size == (3, 3) and layer.query_stride == (2, 2)
    assert layer.layout == 'channels_first' and layer.backend == 'gather'
    assert layer.border == 'zeros' and layer.small_map == 'pad'
    assert type(layer.pos_encoding).__name__ == 'RelativeBiasTable'
    table = layer.pos_encoding.table.reshape(9, 9)
    want = torch.full((9, 9), HARD_NEG)
    want.fill_diagonal_(0)
    assert torch.equal(table, want)
    assert torch.equal(layer.proj.weight, proj_weight(conv.weight, 4, 2))
    assert torch.equal(layer.proj.bias, conv.bias)
    assert layer.is_hard_conv


def test_bias_free_conv_gets_a_zero_bias():
    conv = _conv2d(3, 4, 3, bias=False)
    for init in ('exact', 'quadratic', 'gated'):
        layer = conv_to_attention(conv, init=init)
        assert torch.equal(layer.proj.bias, torch.zeros(4)), init


@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_dtype_and_mode_follow_the_conv(mode):
    conv = _conv2d().double()
    getattr(conv, mode)()
    for init in ('exact', 'gated'):
        layer = conv_to_attention(conv, init=init)
        assert layer.training == (mode == 'train')
        assert {p.dtype for p in layer.parameters()} == {torch.float64}
        assert torch.equal(layer.proj.bias, conv.bias)


def test_soft_init_defaults_and_arguments():
    """qk_dims defaults to min(32, C_in); qk_dims, gate_init, init_mass,
    content_std and backend reach the layer; the q/k bias starts at 0."""
    wide = _conv2d(40, 4, 3)
    assert conv_to_attention(wide, init='quadratic').qk_dims == 32
    assert conv_to_attention(_conv2d(5, 4, 3), init='gated').qk_dims == 5
    layer = conv_to_attention(_conv2d(5, 4, 3), init='gated', qk_dims=3,
                              gate_init=0.7, init_mass=0.9,
                              content_std=1.0, backend='gather')
    assert type(layer) is GatedConvAttention
    assert layer.qk_dims == 3 and layer.backend == 'gather'
    assert torch.sigmoid(layer.gate).flatten()[0].item() == \
        pytest.approx(0.7, abs=1e-6)
    enc = layer.pos_encoding
    assert type(enc).__name__ == 'QuadraticEncoding'
    assert enc.mode == 'isotropic' and enc.init_kernel == (3, 3)
    assert layer.qk.weight.std() > 0.5  # std 1, not the default 0.02
    assert torch.equal(layer.qk.bias, torch.zeros_like(layer.qk.bias))
    small = conv_to_attention(_conv2d(5, 4, 3), init='quadratic')
    assert 0 < small.qk.weight.std() < 0.05
    assert type(small) is ConvAttention and small.border == 'zeros'


def test_soft_init_bound_formula():
    """2·(1 - m)·R·max|x| with R the largest absolute row sum of W_o."""
    layer = conv_to_attention(_conv2d(2, 3, 1, bias=False), init='quadratic')
    with torch.no_grad():
        layer.proj.weight.copy_(torch.tensor([[1., -2.], [0.5, 0.5],
                                              [-4., 0.]]))
    assert soft_init_bound(layer, torch.tensor(-3.), 0.75) == \
        pytest.approx(2 * 0.25 * 4 * -3.)
    assert soft_init_bound(layer, 2, 0.9) == pytest.approx(2 * 0.1 * 4 * 2)


# ------------------------------------------------------------ networks
class _Net(nn.Module):

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.features = nn.Sequential(
            nn.Conv2d(4, 6, (3, 5), stride=(2, 1), padding=(2, 2),
                      dilation=(2, 1), groups=2),
            nn.Conv2d(6, 6, 1))
        self.temporal = nn.Conv1d(6, 6, 3, padding=1)


def test_report_entries_table_and_progress():
    """One dict per converted conv, (name, reason) per skipped one, the
    plain-text table (columns as wide as their widest cell, trailing spaces
    dropped, a count line) and one progress line per conv."""
    lines = []
    net, rep = convert_model(_Net(), progress=lines.append)
    assert isinstance(rep, ConversionReport)
    assert [{k: v for k, v in c.items() if k != 'seconds'}
            for c in rep.converted] == [
        dict(name='stem', kernel=(3, 3), stride=(1, 1), dilation=(1, 1),
             groups=1, **{'in': 3}, out=4, heads=9),
        dict(name='features.0', kernel=(3, 5), stride=(2, 1),
             dilation=(2, 1), groups=2, **{'in': 4}, out=6, heads=15),
        dict(name='temporal', kernel=(3, ), stride=(1, ), dilation=(1, ),
             groups=1, **{'in': 6}, out=6, heads=3)]
    assert all(0 <= c['seconds'] <= rep.seconds for c in rep.converted)
    assert rep.seconds < 60  # wall time of this call, not a time stamp
    kernel1 = ('kernel 1 (the default converts kernels > 1; select it by '
               'name to convert)')
    assert rep.skipped == [('features.1', kernel1)]
    assert isinstance(net.features[0], ConvAttention)
    assert isinstance(net.features[1], nn.Conv2d)
    assert lines == [
        '[1/4] stem: converted 3x3 conv -> 9 heads (exact)',
        '[2/4] features.0: converted 3x5 conv -> 15 heads (exact)',
        f'[3/4] features.1: skipped ({kernel1})',
        '[4/4] temporal: converted 3 conv -> 3 heads (exact)']
    rep.seconds = 1.234
    want = '\n'.join([
        'module      kernel  stride  dil  groups  in  out  heads  status',
        '----------  ------  ------  ---  ------  --  ---  -----  ' + '-' * (
            9 + len(kernel1)),
        'stem        3x3     1x1     1x1  1       3   4    9      converted',
        'features.0  3x5     2x1     2x1  2       4   6    15     converted',
        'temporal    3       1       1    1       6   6    3      converted',
        'features.1' + ' ' * 47 + 'skipped: ' + kernel1,
        '3 converted, 1 skipped in 1.23 s'])
    assert rep.table() == want and str(rep) == want
    assert ConversionReport().table().splitlines()[-1] == \
        '0 converted, 0 skipped in 0.00 s'


def test_select_and_types_forms():
    """A pattern, a list or tuple of patterns, a callable; types as a class
    or a tuple (subclasses included); 'not selected' and 'not in types'
    reasons; init and conv_args reach every layer."""
    lines = []
    net, rep = convert_model(_Net(), select='features.*', init='quadratic',
                             qk_dims=2, progress=lines.append)
    assert [c['name'] for c in rep.converted] == ['features.0', 'features.1']
    assert dict(rep.skipped) == {'stem': 'not selected',
                                 'temporal': 'not selected'}
    assert lines[0] == '[1/4] stem: skipped (not selected)'
    assert lines[1] == ('[2/4] features.0: converted 3x5 conv -> 15 heads '
                        '(quadratic)')
    assert all(type(net.features[i]) is ConvAttention and
               net.features[i].qk_dims == 2 for i in (0, 1))
    _, rep = convert_model(_Net(), select=('stem', 'temporal'))
    assert [c['name'] for c in rep.converted] == ['stem', 'temporal']
    _, rep = convert_model(_Net(), select=['tem*'])
    assert [c['name'] for c in rep.converted] == ['temporal']
    seen = []
    _, rep = convert_model(_Net(), select=lambda n, m: seen.append(n) or
                           m.in_channels == 6)
    assert seen == ['stem', 'features.0', 'features.1', 'temporal']
    assert [c['name'] for c in rep.converted] == ['features.1', 'temporal']
    # fnmatchcase: case matters
    _, rep = convert_model(_Net(), select='STEM')
    assert not rep.converted

    class MyConv(nn.Conv2d):
        pass

    net = nn.Sequential(MyConv(2, 2, 3, padding=1), nn.Conv1d(2, 2, 3,
                                                              padding=1))
    _, rep = convert_model(net, types=nn.Conv2d)
    assert [c['name'] for c in rep.converted] == ['0']
    assert rep.skipped == [('1', 'type Conv1d not in types')]
    net = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1),
                        nn.Conv1d(2, 2, 3, padding=1))
    _, rep = convert_model(net, types=(nn.Conv1d, ))
    assert [c['name'] for c in rep.converted] == ['1']


def test_strict_only_for_selected_convs():
    """strict raises '<name>: <reason>' for a selected conv; with the
    default selection it still skips and reports."""
    def make():
        return nn.Sequential(nn.Conv2d(2, 2, 3, padding=1),
                             nn.Conv2d(2, 2, 3, padding=1,
                                       padding_mode='reflect'))
    _, rep = convert_model(make(), strict=True)
    assert rep.skipped == [('1', "padding_mode='reflect' is not supported; "
                                 "only 'zeros' converts exactly "
                                 "(border='zeros')")]
    with pytest.raises(UnsupportedConvError) as err:
        convert_model(make(), select='*', strict=True)
    assert str(err.value) == ("1: padding_mode='reflect' is not supported; "
                              "only 'zeros' converts exactly "
                              "(border='zeros')")
    _, rep = convert_model(make(), select='*')
    assert [n for n, _ in rep.skipped] == ['1']


def test_convert_model_argument_messages():
    net = _Net()
    with pytest.raises(TypeError) as err:
        convert_model(net, select=3)
    assert str(err.value) == (
        'select=3: expected None, a name pattern (fnmatch, e.g. '
        '"backbone.layer*.conv2"), a list of patterns or a callable(name, '
        'module) -> bool')
    with pytest.raises(TypeError, match=r"^select=\['a', 1\]: expected"):
        convert_model(net, select=['a', 1])
    with pytest.raises(TypeError) as err:
        convert_model(net, types=[nn.Conv2d])
    assert str(err.value) == (
        "types=[<class 'torch.nn.modules.conv.Conv2d'>]: expected an "
        "nn.Module subclass or a tuple of them")
    with pytest.raises(TypeError, match=r'^types=\(<class .int.>,\)'):
        convert_model(net, types=(int, ))
    with pytest.raises(TypeError, match=r'^types=\(3,\)'):
        convert_model(net, types=(3, ))
    with pytest.raises(TypeError) as err:
        convert_model('net')
    assert str(err.value) == 'model=str: expected an nn.Module'
    with pytest.raises(ValueError) as err:
        convert_model(nn.Conv2d(2, 2, 3, padding=1))
    assert str(err.value) == ('the model itself is a conv: call '
                              'conv_to_attention(model) instead')


# ------------------------------------------------------------ ConvToAttention
def test_conv_to_attention_builder_on_a_module():
    """An nn.Module is converted in place and returned; init_cfg replaces
    its own (a copy); convert arguments pass through; a wrong type names
    it."""
    from convattn_mm.registry import MODELS
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 3, 1))
    init_cfg = dict(type='Kaiming', layer='Conv2d')
    out = MODELS.build(dict(type='convattn_mm.ConvToAttention',
                            module=net, init_cfg=init_cfg, init='gated',
                            select='*', qk_dims=2))
    assert out is net
    assert net.init_cfg == init_cfg and net.init_cfg is not init_cfg
    assert all(type(m) is GatedConvAttention and m.qk_dims == 2
               for m in net)
    keep = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1))
    keep.init_cfg = dict(type='Constant', val=1)
    MODELS.get('ConvToAttention')(keep)
    assert keep.init_cfg == dict(type='Constant', val=1)
    assert type(keep[0]) is ConvAttention
    with pytest.raises(TypeError) as err:
        MODELS.get('ConvToAttention')(3)
    assert str(err.value) == ('module=int: expected a config dict or an '
                              'nn.Module')


def test_conv_to_attention_builder_checks_pretrained():
    """A Pretrained init without a checkpoint is refused at build time
    (naming the module and the hint); later loads of weights that do not
    fit are refused too."""
    from convattn_mm.convert.converted import (PRETRAINED_HINT,
                                               ConvToAttention)
    bad = dict(type='Pretrained', checkpoint=None)
    with pytest.raises(ValueError) as err:
        ConvToAttention(nn.Sequential(nn.Conv2d(2, 3, 3, padding=1)),
                        init_cfg=bad)
    assert str(err.value).startswith(
        'Sequential: init_cfg=Pretrained needs a checkpoint and none is set '
        '(checkpoint=None). ' + PRETRAINED_HINT + ' To set it, ')
    with pytest.raises(ValueError) as err:  # before building anything
        ConvToAttention(dict(type='NoSuchNet', init_cfg=bad))
    assert str(err.value).startswith(
        'NoSuchNet: init_cfg=Pretrained needs a checkpoint')
    with pytest.raises(ValueError) as err:
        ConvToAttention(dict(type='NoSuchNet'), init_cfg=bad)
    assert str(err.value).startswith('NoSuchNet: init_cfg=Pretrained')
    net = ConvToAttention(nn.Sequential(nn.Conv2d(2, 3, 3, padding=1)))
    with pytest.raises(ValueError) as err:
        net.load_state_dict({'x.weight': torch.zeros(1)}, strict=False)
    assert str(err.value).startswith('Sequential: the checkpoint matches 0 '
                                     'of its 3 keys')
    assert PRETRAINED_HINT + '.' in str(err.value)


def test_conv_to_attention_builder_on_a_config():
    """A config dict is built in the caller's scope (not modified), with the
    given init_cfg and the top-level data_preprocessor where it has none."""
    from mmengine.registry import init_default_scope

    from convattn_mm.convert.converted import ConvToAttention
    init_default_scope('mmpretrain')
    cfg = dict(type='ImageClassifier',
               backbone=dict(type='ResNet', depth=18, stem_channels=8,
                             base_channels=8, out_indices=(0, )),
               neck=dict(type='GlobalAveragePooling'))
    before = repr(cfg)
    pre = dict(type='ClsDataPreprocessor', mean=[1., 2., 3.],
               std=[1., 1., 1.])
    init_cfg = dict(type='Kaiming', layer='Linear')
    net = ConvToAttention(cfg, data_preprocessor=pre, init_cfg=init_cfg,
                          select='backbone.conv1')
    assert repr(cfg) == before
    assert net.init_cfg == init_cfg
    assert net.data_preprocessor.mean.flatten().tolist() == [1., 2., 3.]
    assert type(net.backbone.conv1) is ConvAttention
    own = dict(cfg, data_preprocessor=dict(type='ClsDataPreprocessor',
                                           mean=[5., 5., 5.],
                                           std=[1., 1., 1.]))
    net = ConvToAttention(own, data_preprocessor=pre, select='x')
    assert net.data_preprocessor.mean.flatten().tolist() == [5., 5., 5.]
    assert net.init_cfg is None


# ------------------------------------------------------------ SAResNet map
def _resnet18_state(prefix='backbone.', width=8):
    from mmpretrain.models.backbones import ResNet
    torch.manual_seed(0)
    sd = ResNet(18, stem_channels=width, base_channels=width).state_dict()
    for k, v in sd.items():
        if v.is_floating_point():
            v.normal_()
    out = OrderedDict((prefix + k, v) for k, v in sd.items())
    out['head.fc.weight'] = torch.randn(10, 8 * width)
    return out


def _saresnet(width=8, **kw):
    from convattn_mm.models import SAResNet
    return SAResNet(18, base_channels=width,
                    num_heads=kw.pop('num_heads', 2), conv_init=True, **kw)


@pytest.mark.parametrize('width, heads', [(8, 2), (16, 16)])
def test_resnet_to_saresnet_copies_and_reports(width, heads):
    """Stem, norms and (none in ResNet-18) 1x1 convs copied; each attention
    layer's value rows / proj columns are the truncated SVD of its offset's
    W_Δ (proj bias 0, value bias 0; more than 9 heads share offsets), and
    the report gives the rank and ‖W − Ŵ‖/‖W‖ of that approximation."""
    from convattn_mm.convert import resnet_to_saresnet
    from convattn_mm.models.encodings import CONV_INIT_OFFSETS
    sd = _resnet18_state(width=width)
    sd['backbone.layer1.0.conv2.weight'] *= 1e-3  # ‖W‖ < 1 too
    model = _saresnet(width, num_heads=heads)
    state, report = resnet_to_saresnet(sd, model)
    model.load_state_dict(state, strict=True)
    assert torch.equal(state['stem.0.weight'], sd['backbone.conv1.weight'])
    assert torch.equal(state['stem.1.running_var'],
                       sd['backbone.bn1.running_var'])
    assert torch.equal(state['res_layers.2.1.bn2.bias'],
                       sd['backbone.layer3.1.bn2.bias'])
    assert torch.equal(state['res_layers.1.0.downsample.0.weight'],
                       sd['backbone.layer2.0.downsample.0.weight'])
    names = [r['name'] for r in report]
    assert names[:3] == ['res_layers.0.0.conv1', 'res_layers.0.0.conv2',
                         'res_layers.0.1.conv1'] and len(names) == 16
    for r in report:
        attn = model.get_submodule(r['name']).attn
        H, d = attn.num_heads, attn.head_dims
        rkey = 'backbone.layer{}.{}.{}.weight'.format(
            int(r['name'].split('.')[1]) + 1, *r['name'].split('.')[2:])
        W = sd[rkey]
        qkv = state[r['name'] + '.attn.qkv.weight']
        proj = state[r['name'] + '.attn.proj.weight']
        approx = torch.zeros_like(W)
        for h in range(H):
            dy, dx = CONV_INIT_OFFSETS[h % 9]
            approx[:, :, dy + 1, dx + 1] += proj[:, h * d:(h + 1) * d] @ \
                qkv[2 * H * d + h * d:2 * H * d + (h + 1) * d]
        err = ((W - approx).norm() / W.norm()).item()
        assert r['rel_error'] == pytest.approx(err, rel=1e-4), r['name']
        assert r['rank'] == min(-(-H // 9) * d, *W.shape[:2])
        assert torch.equal(state[r['name'] + '.attn.proj.bias'],
                           torch.zeros(W.shape[0]))
        assert not state[r['name'] + '.attn.qkv.bias'][2 * H * d:].any()
        # the q/k rows are the model's own
        own = model.state_dict()[r['name'] + '.attn.qkv.weight']
        assert torch.equal(qkv[:2 * H * d], own[:2 * H * d])


def test_resnet_to_saresnet_without_prefix():
    """Keys without the prefix map too (head.* ignored), in the model's
    dtype; with 8 heads of one channel each offset's approximation has
    rank 1."""
    from convattn_mm.convert import resnet_to_saresnet
    sd = _resnet18_state(prefix='')
    model = _saresnet(num_heads=8)
    state, report = resnet_to_saresnet(sd, model, prefix='')
    assert torch.equal(state['stem.0.weight'], sd['conv1.weight'])
    # copied tensors take the model's dtype
    wide = OrderedDict((k, v.double() if v.is_floating_point() else v)
                       for k, v in sd.items())
    state, _ = resnet_to_saresnet(wide, model, prefix='')
    assert state['stem.0.weight'].dtype == torch.float32
    assert state['res_layers.0.0.bn1.running_var'].dtype == torch.float32
    assert [r['rank'] for r in report][:2] == [1, 1]
    assert all(0 < r['rel_error'] < 1 for r in report)


def test_resnet_to_saresnet_messages():
    """Each refusal names the layer, the key or the shapes."""
    from convattn_mm.convert import resnet_to_saresnet
    from convattn_mm.models import SAResNet
    sd = _resnet18_state()
    with pytest.raises(TypeError) as err:
        resnet_to_saresnet(sd, nn.Linear(2, 2))
    assert str(err.value) == 'model=Linear: expected SAResNet'
    with pytest.raises(ValueError) as err:
        resnet_to_saresnet(sd, SAResNet(18, base_channels=8, num_heads=2))
    assert str(err.value) == (
        'res_layers.0.0.conv1: conv_init=False; build SAResNet(conv_init=True)'
        ' so that each head attends to one 3×3 offset')
    with pytest.raises(ValueError) as err:
        resnet_to_saresnet(sd, _saresnet(kernel_size=5))
    assert str(err.value) == ('res_layers.0.0.conv1: kernel_size=(5, 5); '
                              'only 3 (the conv window) maps onto a ResNet')
    missing = OrderedDict(sd)
    del missing['backbone.layer1.0.bn1.weight']
    with pytest.raises(KeyError) as err:
        resnet_to_saresnet(missing, _saresnet())
    assert err.value.args[0] == (
        "ResNet checkpoint has no 'layer1.0.bn1.weight' (for "
        "'res_layers.0.0.bn1.weight'); is it a ResNet-18?")
    missing = OrderedDict(sd)
    del missing['backbone.layer1.0.conv2.weight']
    with pytest.raises(KeyError) as err:
        resnet_to_saresnet(missing, _saresnet())
    assert err.value.args[0] == ("ResNet checkpoint has no "
                                 "'layer1.0.conv2.weight' (for "
                                 "res_layers.0.0.conv2)")
    bad = OrderedDict(sd)
    bad['backbone.bn1.weight'] = torch.ones(9)
    with pytest.raises(ValueError) as err:
        resnet_to_saresnet(bad, _saresnet())
    assert str(err.value) == ('bn1.weight: shape (9,) does not match '
                              'stem.1.weight (8,)')
    bad = OrderedDict(sd)
    bad['backbone.layer1.0.conv2.weight'] = torch.ones(8, 4, 3, 3)
    with pytest.raises(ValueError) as err:
        resnet_to_saresnet(bad, _saresnet())
    assert str(err.value) == ('res_layers.0.0.conv2: conv 4->8 does not '
                              'match the attention 8->8')


def test_feature_errors_per_stage_and_state_restored():
    """Four stage errors against the ResNet in eval mode; the model's
    out_indices and train mode come back as they were."""
    from mmpretrain.models.backbones import ResNet

    from convattn_mm.convert import feature_errors, resnet_to_saresnet
    sd = _resnet18_state()
    # small features (norms below 1) make the relative errors scale-free
    sd = OrderedDict((k, v.abs() + 0.5 if 'running_var' in k else 1e-3 * v if
                      v.dim() == 1 and k.endswith(('weight', 'bias')) else v)
                     for k, v in sd.items())
    model = _saresnet(out_indices=(1, ))
    model.load_state_dict(resnet_to_saresnet(sd, model)[0])
    x = torch.randn(1, 3, 32, 32)
    for train in (True, False):
        model.train(train)
        errs = feature_errors(sd, model, x)
        assert model.training == train and model.out_indices == (1, )
    resnet = ResNet(18, stem_channels=8, base_channels=8,
                    out_indices=(0, 1, 2, 3))
    resnet.load_state_dict({k[9:]: v for k, v in sd.items()
                            if k.startswith('backbone.')})
    resnet.eval()  # mmpretrain's train() returns None: no chaining
    model.eval()
    model.out_indices = (0, 1, 2, 3)
    with torch.no_grad():
        want = [((a - b).norm() / b.norm()).item()
                for a, b in zip(model(x), resnet(x))]
    assert len(errs) == 4
    assert errs == pytest.approx(want, rel=1e-4)
    assert all(0 < f.norm() < 1 for f in resnet(x))
    # the ResNet is loaded strictly: a key it lacks is an error
    with pytest.raises(RuntimeError, match='Unexpected key'):
        feature_errors(dict(sd, **{'backbone.extra': torch.ones(1)}), model,
                       x)


# ------------------------------------------------------------ TCN lifter
def test_tcn_settings_defaults_and_refusals():
    """mmpose's TCN defaults fill what the config leaves out; 'mmpose.TCN'
    and BN / BN1d norms are accepted; anything else is named."""
    from convattn_mm.convert import tcn_settings
    assert tcn_settings(dict(type='TCN', in_channels=34)) == dict(
        in_channels=34, stem_channels=1024, num_blocks=2,
        kernel_sizes=(3, 3, 3), dropout=0.25, causal=False, residual=True)
    given = dict(in_channels=6, stem_channels=8, num_blocks=1,
                 kernel_sizes=[5, 3], dropout=0.0, causal=True,
                 residual=False)
    got = tcn_settings(dict(type='mmpose.TCN', norm_cfg=dict(type='BN'),
                            conv_cfg=dict(type='Conv1d'), **given))
    assert got == dict(given, kernel_sizes=(5, 3))
    assert tcn_settings(dict(type='TCN', in_channels=2, conv_cfg=None,
                             norm_cfg=None))['in_channels'] == 2
    with pytest.raises(ValueError) as err:
        tcn_settings(dict(type='TCNX', in_channels=34))
    assert str(err.value) == ("backbone.type='TCNX' is not supported; choose "
                              "one of ['TCN', 'mmpose.TCN']")
    with pytest.raises(ValueError) as err:
        tcn_settings(dict(type='TCN', in_channels=3,
                          conv_cfg=dict(type='Conv2d')))
    assert str(err.value) == ("conv_cfg={'type': 'Conv2d'}: only Conv1d TCNs "
                              "convert")
    with pytest.raises(ValueError) as err:
        tcn_settings(dict(type='TCN', in_channels=3,
                          norm_cfg=dict(type='GN')))
    assert str(err.value) == "norm_cfg={'type': 'GN'}: only BN1d TCNs convert"


def _tcn(**kw):
    from mmpose.models.backbones import TCN
    kw.setdefault('stem_channels', 8)
    tcn = TCN(6, **kw)
    tcn.train()
    with torch.no_grad():
        tcn(torch.randn(4, 6, 60))  # running statistics away from 0/1
    return tcn


@pytest.mark.parametrize('kw', [
    dict(kernel_sizes=(3, 5, 3), residual=False, dropout=0.0),
    dict(kernel_sizes=(3, 3), num_blocks=1, causal=True, dropout=0.5)])
def test_tcn_to_attention_exact_in_each_form(kw):
    """Residual or not, causal or not, with or without dropout: same
    outputs; the network takes the TCN's settings and mode."""
    tcn = _tcn(**kw)
    tcn.eval()
    from convattn_mm.convert import TCNAttnNet, tcn_to_attention
    net = tcn_to_attention(tcn)
    assert type(net) is TCNAttnNet and not net.training
    assert net.kernel_sizes == tuple(kw['kernel_sizes'])
    assert net.residual == kw.get('residual', True)
    assert net.causal == kw.get('causal', False)
    assert isinstance(net.drop, nn.Dropout) == (kw['dropout'] > 0)
    if kw['dropout']:
        assert net.drop.p == kw['dropout']
    x = torch.randn(2, 6, net.receptive_field + 4)
    with torch.no_grad():
        for a, b in zip(net(x), tcn(x)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    tcn.train()
    assert tcn_to_attention(tcn).training


def test_tcn_to_attention_soft_init_arguments():
    """conv_init and qk_dims reach every attention layer."""
    from convattn_mm.convert import tcn_to_attention
    net = tcn_to_attention(_tcn(), conv_init='gated', qk_dims=3)
    layers = [net.expand.attn] + [b.attn.attn for b in net.blocks]
    assert all(type(m) is GatedConvAttention and m.qk_dims == 3
               for m in layers)


def test_tcn_attn_net_geometry_and_refusals():
    """Dilations multiply the kernels, receptive field 1 + Σ(k-1)·d,
    [B, K, C, T] inputs flatten, and every bad argument is named."""
    from convattn_mm.convert import TCNAttnNet
    net = TCNAttnNet(6, stem_channels=4, kernel_sizes=(3, 5, 3), dropout=0)
    assert net.dilations == [1, 3, 15]
    assert net.receptive_field == 1 + 2 + 12 + 30
    assert [b.attn.crop for b in net.blocks] == [6, 15]
    assert net.expand.crop == 1 and isinstance(net.drop, nn.Identity)
    net.eval()
    x = torch.randn(2, 3, 2, 47)
    outs = net(x)
    assert [tuple(o.shape) for o in outs] == [(2, 4, 33), (2, 4, 3)]
    with torch.no_grad():
        torch.testing.assert_close(net(x.flatten(1, 2))[-1], outs[-1])
    with pytest.raises(ValueError) as err:
        net(torch.randn(1, 6, 44))
    assert str(err.value) == ('x.shape=(1, 6, 44): needs at least '
                              'receptive_field=45 frames')
    with pytest.raises(ValueError) as err:
        TCNAttnNet(6, num_blocks=2, kernel_sizes=(3, 3))
    assert str(err.value) == ('kernel_sizes=(3, 3): expected num_blocks + 1 '
                              '= 3 entries')
    for bad in ((3, 4), (3, -1), (3, 3.0), (3, 0)):
        with pytest.raises(ValueError) as err:
            TCNAttnNet(6, num_blocks=1, kernel_sizes=bad)
        assert str(err.value) == (f'kernel_sizes={bad}: expected odd '
                                  f'positive ints')
    with pytest.raises(ValueError) as err:
        TCNAttnNet(6, conv_init='hard')
    assert str(err.value) == ("conv_init='hard' is not supported; choose one "
                              "of ['exact', 'gated', 'quadratic']")
    assert TCNAttnNet(2, stem_channels=2, num_blocks=1, kernel_sizes=(1, 1),
                      dropout=0).receptive_field == 1
    init_cfg = dict(type='Constant', layer='Conv1d', val=0)
    assert TCNAttnNet(6, stem_channels=4, init_cfg=init_cfg).init_cfg == \
        init_cfg


def test_tcn_attn_net_backend_and_default_layers():
    """The backend reaches every attention layer; a layer built without
    weights is an exact conv of a default-initialised Conv1d."""
    from convattn_mm.convert import TCNAttnNet
    from convattn_mm.convert.tcn_attn import temporal_conv_attention
    net = TCNAttnNet(6, stem_channels=4, backend='gather')
    assert {b.attn.attn.backend for b in net.blocks} == {'gather'}
    assert net.expand.attn.backend == 'gather'
    layer = temporal_conv_attention(3, 4, 5, 2)
    assert layer.is_hard_conv and layer.dilation == (2, )
    assert layer.proj.weight.abs().sum() > 0
    assert torch.equal(layer.proj.bias, torch.zeros(4))


def test_tcn_state_dict_refusals_and_lifter_map():
    """A lifter's backbone.* is converted, the rest kept; the config of the
    new backbone; a biased conv, a width-changing block, a wrong shape and a
    missing backbone are named."""
    from convattn_mm.convert import (TCNAttnNet, convert_lifter_state_dict,
                                     tcn_settings, tcn_state_to_attention)
    tcn = _tcn(kernel_sizes=(3, 3), num_blocks=1)
    state = {'backbone.' + k: v for k, v in tcn.state_dict().items()}
    state['head.conv.weight'] = torch.ones(2)
    backbone = dict(type='TCN', in_channels=6, stem_channels=8, num_blocks=1,
                    kernel_sizes=(3, 3))
    out, cfg = convert_lifter_state_dict(state, backbone)
    assert cfg == dict(type='convattn_mm.TCNAttnNet', conv_init='exact',
                       **tcn_settings(backbone))
    assert out['head.conv.weight'] is state['head.conv.weight']
    net = TCNAttnNet(**tcn_settings(backbone))
    net.load_state_dict({k[9:]: v for k, v in out.items()
                         if k.startswith('backbone.')}, strict=True)
    assert torch.equal(out['backbone.blocks.0.conv2.weight'],
                       state['backbone.tcn_blocks.0.conv2.0.conv.weight'])
    assert torch.equal(out['backbone.expand_bn.running_mean'],
                       state['backbone.expand_conv.bn.running_mean'])
    assert torch.equal(out['backbone.blocks.0.bn2.num_batches_tracked'],
                       state['backbone.tcn_blocks.0.conv2.0.bn.'
                             'num_batches_tracked'])
    out, cfg = convert_lifter_state_dict(state, backbone, conv_init='gated',
                                         qk_dims=2)
    assert cfg['conv_init'] == 'gated' and cfg['qk_dims'] == 2
    net = TCNAttnNet(**tcn_settings(backbone), conv_init='gated', qk_dims=2)
    net.load_state_dict({k[9:]: v for k, v in out.items()
                         if k.startswith('backbone.')}, strict=True)
    with pytest.raises(ValueError) as err:
        convert_lifter_state_dict({'head.w': torch.ones(1)}, backbone)
    assert str(err.value) == 'the state dict has no backbone.* keys'
    sd, settings = tcn.state_dict(), tcn_settings(backbone)
    with pytest.raises(ValueError) as err:
        tcn_state_to_attention(dict(sd, **{'expand_conv.conv.bias':
                                           torch.ones(8)}), settings)
    assert str(err.value) == ('expand_conv.conv.bias: TCN convolutions with a '
                              'bias (no norm layer) are not supported')
    with pytest.raises(ValueError) as err:
        tcn_state_to_attention(dict(sd, **{'tcn_blocks.0.short_cut.weight':
                                           torch.ones(1)}), settings)
    assert str(err.value) == ('tcn_blocks.0.short_cut: blocks that change '
                              'width are not supported')
    with pytest.raises(ValueError) as err:
        tcn_state_to_attention(sd, dict(settings, in_channels=5))
    assert str(err.value) == ('expand: weight shape (8, 6, 3), expected '
                              '(8, 5, 3)')
    with pytest.raises(ValueError) as err:
        tcn_state_to_attention(sd, dict(settings, kernel_sizes=(3, 5)))
    assert str(err.value) == ('blocks.0.attn: weight shape (8, 8, 3), '
                              'expected (8, 8, 5)')


def test_tcn_state_keeps_the_dtype_and_relative_error():
    """Converted tensors keep the checkpoint's dtype; relative_error is
    max|a - b| / max|b| (b = 0 does not divide by zero)."""
    from convattn_mm.convert import (relative_error, tcn_settings,
                                     tcn_state_to_attention)
    tcn = _tcn(kernel_sizes=(3, 3), num_blocks=1)
    sd = {k: v.half() if v.is_floating_point() else v
          for k, v in tcn.state_dict().items()}
    settings = tcn_settings(dict(type='TCN', in_channels=6, stem_channels=8,
                                 num_blocks=1, kernel_sizes=(3, 3)))
    out = tcn_state_to_attention(sd, settings)
    assert out['expand.attn.proj.weight'].dtype == torch.float16
    assert out['blocks.0.attn.attn.pos_encoding.table'].dtype == \
        torch.float16
    a, b = torch.tensor([1., -3.]), torch.tensor([2., -4.])
    assert relative_error(a, b) == 0.25
    assert relative_error(b, torch.zeros(2)) == pytest.approx(4e30)


def test_soft_init_alpha_from_mass_and_dilation():
    """α = ln((n-1)(1-ε)/ε) / d_min² with the centres on the dilated kernel
    grid (module doc of convattn_mm/convert/conv.py)."""
    import math
    conv = nn.Conv2d(3, 4, (3, 5), padding=(2, 6), dilation=(2, 3))
    layer = conv_to_attention(conv, init='quadratic', init_mass=0.95)
    enc = layer.pos_encoding
    assert enc.init_kernel == (3, 5)
    n, eps = 15, 0.05
    want = math.log((n - 1) * (1 - eps) / eps) / 4
    assert enc.log_alpha.exp().flatten()[0].item() == pytest.approx(
        want, rel=1e-5)
    centres = {tuple(c) for c in enc.centres.detach().round().int().tolist()}
    assert centres == {(dy, dx) for dy in (-2, 0, 2) for dx in (-6, -3, 0, 3,
                                                                6)}


def test_tcn_soft_state_has_the_dilated_centres():
    """With a soft init, each converted layer's position encoding is the
    one of its own kernel and dilation (expand d=1, block i d=k0·...·k_i)."""
    from convattn_mm.convert import (TCNAttnNet, tcn_settings,
                                     tcn_state_to_attention)
    tcn = _tcn(kernel_sizes=(5, 3, 3), num_blocks=2)
    settings = tcn_settings(dict(type='TCN', in_channels=6, stem_channels=8,
                                 num_blocks=2, kernel_sizes=(5, 3, 3)))
    out = tcn_state_to_attention(tcn.state_dict(), settings, 'quadratic', 2)
    own = TCNAttnNet(**settings, conv_init='quadratic', qk_dims=2)
    keys = [k for k in own.state_dict() if 'pos_encoding' in k]
    assert len(keys) == 6  # centres and log_alpha of 3 layers
    for k in keys:
        torch.testing.assert_close(out[k], own.state_dict()[k], msg=k)


def test_tcn_attn_net_documented_defaults():
    """Defaults as documented (mmpose's TCN's): 1024 channels, 2 blocks of
    kernel 3, dropout 0.25, residual, not causal, exact layers."""
    from convattn_mm.convert import TCNAttnNet
    net = TCNAttnNet(34)
    assert net.stem_channels == 1024 and len(net.blocks) == 2
    assert net.kernel_sizes == (3, 3, 3) and net.receptive_field == 27
    assert net.drop.p == 0.25 and net.residual and not net.causal
    assert net.expand.attn.is_hard_conv and net.expand.attn.backend == 'auto'
    assert net.blocks[1].bn2.num_features == 1024
