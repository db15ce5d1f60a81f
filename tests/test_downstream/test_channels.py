"""Channels, declared: a detector or pose model whose neck / head
in_channels disagree with the backbone's maps fails while it is built, with
the right channels in the message (it used to be a conv shape error at the
first forward)."""
import re

import pytest

from .synthetic import require_stack

require_stack()

from mmengine.registry import MODELS  # noqa: E402

from .synthetic import ROOT, load_config, scope, shrink_backbone  # noqa: E402


def test_backbones_declare_channels():
    from convattn_mm.models import ConvAttnNet, SAResNet
    net = ConvAttnNet('tiny', out_indices=(1, 2, 3))
    assert net.stage_channels == (64, 128, 256, 512)
    assert net.out_channels == (128, 256, 512)
    net = SAResNet(50, out_indices=(-1, 0))
    assert net.stage_channels == (256, 512, 1024, 2048)
    assert net.out_channels == (256, 2048)


@pytest.mark.parametrize('config, right', [
    ('det/retinanet_convattn-t_fpn_1x_coco.py', '[32, 48, 64]'),
    ('det/mask-rcnn_saresnet50_fpn_1x_coco.py', '[32, 64, 128, 256]'),
])
def test_wrong_neck_channels_fail_at_build(config, right):
    cfg = shrink_backbone(load_config(f'{ROOT}/configs/{config}'))
    cfg.model.neck.in_channels = [c + 1 for c in cfg.model.neck.in_channels]
    with scope('mmdet'), pytest.raises(
            ValueError, match=re.escape(f'set model.neck.in_channels={right}')):
        MODELS.build(cfg.model)
    cfg.model.neck.in_channels = eval(right)
    with scope('mmdet'):
        MODELS.build(cfg.model)  # the right channels build


def test_wrong_head_channels_fail_at_build():
    cfg = shrink_backbone(load_config(
        f'{ROOT}/configs/pose/td-hm_convattn-t_8xb64-210e_coco-256x192.py'))
    cfg.model.head.in_channels = 512  # the full-size tiny's, not this one's
    with scope('mmpose'), pytest.raises(
            ValueError, match='set model.head.in_channels=64'):
        MODELS.build(cfg.model)
