"""convert_model on whole networks; checkpoints (mmengine, torchvision)."""
import copy

import pytest
import torch
import torch.nn as nn
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint, save_checkpoint

from convattn_mm.convert import (UnsupportedConvError, convert_model,
                                 load_cnn_state_dict, save_converted)
from convattn_mm.models.layers import ConvAttention


def _classifier(depth=18, channels=8, classes=10):
    init_default_scope('mmpretrain')
    return dict(
        type='ImageClassifier',
        backbone=dict(type='ResNet', depth=depth, stem_channels=channels,
                      base_channels=channels),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=classes,
                  in_channels=channels * 8 * (4 if depth >= 50 else 1)))


def _build(cfg):
    m = ROOT_MODELS.build(copy.deepcopy(cfg))
    m.init_weights()
    # non-trivial BN statistics, so eval-mode logits depend on them
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.normal_(0, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


def test_random_resnet18_identical_logits():
    model = _build(_classifier(18, channels=64, classes=1000))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x, mode='tensor')
    conv, report = convert_model(copy.deepcopy(model))
    conv.eval()
    with torch.no_grad():
        got = conv(x, mode='tensor')
    assert (got - ref).abs().max() <= 1e-5 * ref.abs().max()
    assert len(report.converted) == 17  # stem 7x7 + 16 3x3
    assert [n for n, _ in report.skipped] == [
        f'backbone.layer{i}.0.downsample.0' for i in (2, 3, 4)]
    assert all('kernel 1' in r for _, r in report.skipped)
    assert isinstance(conv.backbone.layer1[0].conv2, ConvAttention)
    assert 'converted' in report.table() and '17 converted' in str(report)


def test_select_patterns_types_callable():
    model = _build(_classifier())
    _, rep = convert_model(copy.deepcopy(model),
                           select='backbone.layer1.*.conv2')
    assert [c['name'] for c in rep.converted] == [
        'backbone.layer1.0.conv2', 'backbone.layer1.1.conv2']
    _, rep = convert_model(copy.deepcopy(model),
                           select=['*downsample.0', 'backbone.conv1'])
    assert len(rep.converted) == 4  # 1x1 convs when selected by name
    _, rep = convert_model(copy.deepcopy(model),
                           select=lambda n, m: m.stride == (2, 2))
    assert {c['stride'] for c in rep.converted} == {(2, 2)}
    _, rep = convert_model(copy.deepcopy(model), types=nn.Conv1d)
    assert not rep.converted and all('not in types' in r
                                     for _, r in rep.skipped)
    # the converted model still matches with a partial selection
    x = torch.randn(1, 3, 32, 32)
    part, _ = convert_model(copy.deepcopy(model), select='*layer3*')
    with torch.no_grad():
        assert torch.allclose(part.eval()(x, mode='tensor'),
                              model(x, mode='tensor'), atol=1e-5)


def test_unconvertible_selected_conv_skipped_or_strict():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1),
                        nn.Conv2d(4, 4, 3, padding=1, padding_mode='reflect'),
                        nn.ConvTranspose2d(4, 4, 3, padding=1))
    _, rep = convert_model(copy.deepcopy(net))
    assert [c['name'] for c in rep.converted] == ['0']
    reasons = dict(rep.skipped)
    assert "padding_mode='reflect'" in reasons['1']
    assert 'not in types' in reasons['2']
    with pytest.raises(UnsupportedConvError, match=r"^1: padding_mode="):
        convert_model(copy.deepcopy(net), select='*', strict=True)
    with pytest.raises(TypeError, match=r'select=3: expected None'):
        convert_model(net, select=3)
    with pytest.raises(TypeError, match=r'types=.*expected an nn.Module'):
        convert_model(net, types=(int, ))
    with pytest.raises(TypeError, match=r'model=int: expected'):
        convert_model(3)
    with pytest.raises(ValueError, match=r'the model itself is a conv'):
        convert_model(nn.Conv2d(3, 3, 3, padding=1))


def test_progress_lines():
    lines = []
    convert_model(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1),
                                nn.Conv2d(4, 4, 1)), progress=lines.append)
    assert lines[0].startswith('[1/2] 0: converted 3x3 conv -> 9 heads')
    assert lines[1].startswith('[2/2] 1: skipped (kernel 1')


@pytest.mark.parametrize('init', ['exact', 'gated'])
def test_state_dict_round_trip_via_config(tmp_path, init):
    """Save with mmengine, rebuild from a ConvToAttention config, load
    strictly, same logits."""
    cls_cfg = _classifier()
    model = _build(cls_cfg)
    conv, _ = convert_model(copy.deepcopy(model), init=init)
    conv.eval()
    path = str(tmp_path / 'conv.pth')
    save_converted(conv, path, meta=dict(init=init))
    rebuilt = ROOT_MODELS.build(
        dict(type='convattn_mm.ConvToAttention', module=cls_cfg, init=init))
    load_checkpoint(rebuilt, path, map_location='cpu', strict=True,
                    logger='silent')
    rebuilt.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x, mode='tensor'), conv(x, mode='tensor'))


def test_torchvision_and_mmpretrain_layouts(tmp_path):
    """A torchvision ResNet-18 file and an mmpretrain-style checkpoint (both
    written here) convert; logits equal torchvision's own."""
    tv = pytest.importorskip('torchvision')
    net = tv.models.resnet18(num_classes=1000).eval()
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    tv_path = str(tmp_path / 'resnet18-tv.pth')
    torch.save(net.state_dict(), tv_path)
    sd, layout = load_cnn_state_dict(tv_path)
    assert layout == 'torchvision' and 'head.fc.weight' in sd
    model = ROOT_MODELS.build(_classifier(18, channels=64, classes=1000))
    model.load_state_dict(sd, strict=True)
    model.eval()
    mm_path = str(tmp_path / 'resnet18-mm.pth')
    save_checkpoint(dict(meta=dict(), state_dict=model.state_dict()),
                    mm_path)
    sd2, layout2 = load_cnn_state_dict(mm_path)
    assert layout2 == 'mmengine' and sd2.keys() == sd.keys()
    conv, _ = convert_model(copy.deepcopy(model))
    conv.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = net(x)
        got = conv(x, mode='tensor')
    assert (got - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_checkpoint_errors(tmp_path):
    import fractions

    import numpy as np
    bad = str(tmp_path / 'runner.pth')
    torch.save(dict(state_dict=dict(w=torch.ones(1)),
                    hub=fractions.Fraction(1, 3)), bad)
    with pytest.raises(ValueError, match=r'will not load with '
                       r'weights_only=True.*trust=True'):
        load_cnn_state_dict(bad)
    sd, layout = load_cnn_state_dict(bad, trust=True)
    assert layout == 'mmengine' and torch.equal(sd['w'], torch.ones(1))
    ok = str(tmp_path / 'np.pth')
    torch.save(dict(state_dict=dict(w=torch.ones(1)),
                    meta=dict(epoch=np.int64(3), dt=np.dtype('float32'))), ok)
    assert load_cnn_state_dict(ok)[1] == 'mmengine'
    weird = str(tmp_path / 'weird.pth')
    torch.save(dict(a=1), weird)
    with pytest.raises(ValueError, match=r'checkpoint layout not recognised'):
        load_cnn_state_dict(weird)
    with pytest.raises(ValueError, match=r"layout='caffe' is not supported"):
        load_cnn_state_dict(ok, layout='caffe')
