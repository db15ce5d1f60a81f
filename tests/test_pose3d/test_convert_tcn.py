"""mmpose TCN -> TCNAttnNet: exact on random TCNs of both forms (strided
and dilated, causal or not); on a TCN trained on the fixture, the
command-line converter's model gives the TCN's MPJPE, and fine-tuning it is
at least as good as the TCN on the held-out subjects."""
import runpy

import pytest

from tests.test_downstream.synthetic import require_stack

require_stack()

import torch  # noqa: E402

from convattn_mm.convert import relative_error, tcn_to_attention  # noqa
from .lifting import ROOT, TCN_27FRM, fixture_cfg, train  # noqa: E402


def trained_bn(tcn):
    """Running statistics that are not the identity."""
    tcn.train()
    with torch.no_grad():
        for _ in range(3):
            tcn(torch.randn(8, tcn.in_channels, 81) * 2 + 0.5)
    tcn.eval()  # mmpose's BaseBackbone.train returns None: no chaining
    return tcn


@pytest.mark.parametrize('use_stride_conv', [False, True])
@pytest.mark.parametrize('causal', [False, True])
def test_random_tcn_converts_exactly(use_stride_conv, causal):
    from mmpose.models.backbones import TCN
    tcn = trained_bn(TCN(34, stem_channels=32, num_blocks=2,
                         kernel_sizes=(3, 3, 3), causal=causal,
                         use_stride_conv=use_stride_conv))
    net = tcn_to_attention(tcn).eval()
    assert net.receptive_field == 27
    x = torch.randn(4, 34, 27)
    with torch.no_grad():
        assert relative_error(net(x)[-1], tcn(x)[-1]) <= 1e-5
        if not use_stride_conv:  # every output frame of a longer clip
            x = torch.randn(2, 34, 60)
            for a, b in zip(net(x), tcn(x)):
                assert a.shape == b.shape
                assert relative_error(a, b) <= 1e-5


def test_converter_errors():
    from convattn_mm.convert import tcn_settings
    with pytest.raises(ValueError, match="backbone.type='TCNX'"):
        tcn_settings(dict(type='TCNX', in_channels=34))
    with pytest.raises(ValueError, match='conv_cfg'):
        tcn_settings(dict(type='TCN', in_channels=34,
                          conv_cfg=dict(type='Conv2d')))
    from convattn_mm.convert import TCNAttnNet
    with pytest.raises(ValueError, match='kernel_sizes'):
        TCNAttnNet(34, num_blocks=2, kernel_sizes=(3, 3))
    with pytest.raises(ValueError, match='receptive_field=27'):
        TCNAttnNet(34, stem_channels=8)(torch.randn(1, 34, 20))


def evaluate(cfg, checkpoint):
    from mmengine.runner import Runner
    cfg.load_from = checkpoint
    return Runner.from_cfg(cfg).val()


@pytest.mark.slow
def test_trained_tcn_converts_and_fine_tunes(h36m, tmp_path):
    root, paths = h36m
    attn_config = (f'{ROOT}/configs/pose3d/'
                   'video-pose-lift_tcn-attn-27frm_8xb128-160e_h36m.py')
    # 1. mmpose's TCN, trained on the fixture (with the train pipeline of
    # the attention configs, so that fine-tuning sees the same data)
    tcn_cfg = fixture_cfg(TCN_27FRM, root, tmp_path / 'tcn', 300, lr=1e-3)
    tcn_cfg.train_dataloader.dataset.pipeline = fixture_cfg(
        attn_config, root, tmp_path, 1).train_dataloader.dataset.pipeline
    _, tcn_metrics = train(tcn_cfg)
    tcn_cfg.dump(str(tmp_path / 'tcn.py'))
    # 2. converted on the command line (checks 1e-5 itself: exit status)
    convert = runpy.run_path(f'{ROOT}/tools/convert_tcn.py', run_name='x')
    assert convert['main']([str(tmp_path / 'tcn.py'),
                            str(tmp_path / 'tcn' / 'iter_300.pth'),
                            '--out-dir', str(tmp_path / 'conv')]) == 0
    ckpt = str(tmp_path / 'conv' / 'tcn_tcn-attn-exact.pth')
    # 3. the converted lifter's MPJPE through the Runner = the TCN's
    attn_cfg = fixture_cfg(attn_config, root, tmp_path / 'eval', 1)
    converted = evaluate(attn_cfg, ckpt)
    assert abs(converted['MPJPE'] - tcn_metrics['MPJPE']) < 1e-5
    # 4. fine-tuned from the converted checkpoint: at least as good
    ft_cfg = fixture_cfg(attn_config, root, tmp_path / 'ft', 100, lr=1e-4)
    ft_cfg.load_from = ckpt
    _, ft_metrics = train(ft_cfg)
    print(f"TCN {tcn_metrics['MPJPE'] * 1e3:.1f} mm, converted "
          f"{converted['MPJPE'] * 1e3:.1f} mm, fine-tuned "
          f"{ft_metrics['MPJPE'] * 1e3:.1f} mm")
    assert ft_metrics['MPJPE'] <= tcn_metrics['MPJPE']
