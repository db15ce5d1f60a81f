"""Every downstream config builds; mmdet's and mmpose's own packaged configs
build with the backbone swapped from the command line (--cfg-options)."""
import argparse

import pytest

from .synthetic import require_stack

require_stack()


import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402

from .synthetic import (DET_CONFIGS, HEATMAP_CONFIGS, POSE_CONFIGS,  # noqa: E402,E501
                        load_config, name, scope)


def build(cfg):
    from mmengine.registry import MODELS
    with scope(cfg.get('default_scope', 'mmengine')):
        return MODELS.build(cfg.model)


def test_config_lists_are_complete():
    assert [name(c) for c in DET_CONFIGS] == [
        'mask-rcnn_convattn-r50-exact_fpn_1x_coco',
        'mask-rcnn_convattn-t_fpn_1x_coco',
        'mask-rcnn_saresnet50_fpn_1x_coco',
        'retinanet_convattn-r50-exact_fpn_1x_coco',
        'retinanet_convattn-t_fpn_1x_coco',
        'retinanet_saresnet50_fpn_1x_coco',
    ]
    assert len(POSE_CONFIGS) == 4  # 3-D pose: configs/pose3d/


@pytest.mark.parametrize('path', DET_CONFIGS + POSE_CONFIGS, ids=name)
def test_config_builds(path):
    from convattn_mm.models import (ConvAttnNet, SAResNet, TemporalAttnNet,
                                    VolumeAttnNet)
    cfg = load_config(path)
    model = build(cfg)
    backbone = getattr(model, 'backbone', model)
    if cfg.model.get('backbone', {}).get('type') == \
            'convattn_mm.ConvToAttention':  # a converted mmdet/mmpose ResNet
        from convattn_mm.models.layers import ConvAttention
        assert type(backbone).__name__ == 'ResNet'
        assert sum(isinstance(m, ConvAttention)
                   for m in backbone.modules()) == 17
    else:
        assert isinstance(backbone, (ConvAttnNet, SAResNet, TemporalAttnNet,
                                     VolumeAttnNet))
    if 'optim_wrapper' in cfg and 'constructor' in cfg.optim_wrapper:
        from mmengine.optim import build_optim_wrapper
        with scope(cfg.default_scope):
            optim = build_optim_wrapper(model, cfg.optim_wrapper)
        lrs = {g['lr'] for g in optim.optimizer.param_groups}
        assert len(lrs) > 2  # layer-wise decay spreads the rates


def test_det_config_start_points():
    """ImageNet starts need a checkpoint the user sets (no machine path in
    a config); SAResNet-50 is trained from scratch (no frozen stages)."""
    for path in DET_CONFIGS + HEATMAP_CONFIGS:
        bb = Config.fromfile(path).model.backbone
        if bb.type.endswith('SAResNet'):
            assert 'init_cfg' not in bb  # the backbone's own init
            assert bb.frozen_stages == -1 and not bb.norm_eval
            assert bb.conv_init and bb.depth == 50
            continue
        assert bb.init_cfg.type == 'Pretrained'
        assert bb.init_cfg.checkpoint is None
        if bb.type.endswith('ConvToAttention'):
            assert bb.init == 'exact' and bb.module.depth == 50
            assert 'prefix' not in bb.init_cfg  # torchvision's keys
        else:
            assert bb.init_cfg.prefix == 'backbone.'
            assert bb.arch == 'tiny'


def cfg_options(args):
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options'] + args).cfg_options


PACKAGED = {
    'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py': [
        'model.backbone._delete_=True',
        'model.backbone.type=convattn_mm.ConvAttnNet',
        'model.backbone.arch=tiny', 'model.backbone.out_indices=[1,2,3]',
        'model.neck.in_channels=[128,256,512]', 'model.neck.start_level=0'
    ],
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py': [
        'model.backbone._delete_=True',
        'model.backbone.type=convattn_mm.SAResNet',
        'model.backbone.depth=50', 'model.backbone.out_indices=[0,1,2,3]'
    ],
    'mmpose::body_2d_keypoint/topdown_heatmap/coco/'
    'td-hm_res50_8xb64-210e_coco-256x192.py': [
        'model.backbone._delete_=True',
        'model.backbone.type=convattn_mm.ConvAttnNet',
        'model.backbone.arch=tiny', 'model.head.in_channels=512'
    ],
    'mmpose::body_3d_keypoint/video_pose_lift/h36m/'
    'video-pose-lift_tcn-27frm-supv_8xb128-160e_h36m.py': [
        'model.backbone._delete_=True',
        'model.backbone.type=convattn_mm.TemporalAttnNet',
        'model.backbone.in_channels=34', 'model.backbone.embed_dims=64',
        'model.head.in_channels=64'
    ],
}


@pytest.mark.parametrize('path', sorted(PACKAGED), ids=lambda p: p[:40])
def test_packaged_config_with_swapped_backbone(path):
    from mmengine.hub import get_config
    cfg = get_config(path)  # the installed package's own config file
    cfg.merge_from_dict(cfg_options(PACKAGED[path]))
    model = build(cfg)
    assert type(model.backbone).__module__.startswith('convattn_mm.')
    # the swapped backbone feeds the packaged neck / head
    model.eval()
    with torch.no_grad():
        if 'video_pose_lift' in path:
            feats = model.extract_feat(torch.randn(1, 34, 27))
            assert model.head(feats).shape == (1, 17, 3)
        else:
            feats = model.extract_feat(torch.randn(1, 3, 64, 64))
            assert all(torch.isfinite(f).all() for f in feats)
