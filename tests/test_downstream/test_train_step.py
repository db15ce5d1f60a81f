"""One training step (data preprocessor, loss, backward, optimiser step) of
every downstream config on a synthetic batch at a small input size; the last
stage's maps are 2x2 / 2x3 (smaller than the attention windows)."""
import pytest

from .synthetic import require_stack

require_stack()


import math  # noqa: E402

import torch  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import MODELS  # noqa: E402

from .synthetic import (DET_CONFIGS, HEATMAP_CONFIGS, ROOT, boxes_image,  # noqa: E402,E501
                        det_batch, keypoints_image, load_config, name,
                        pose_batch, pose_codec, scope)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def check_step(model, optim, data, frozen_prefix):
    before = snapshot(model)
    model.train()
    log = model.train_step(data, optim)
    assert log and all(math.isfinite(float(torch.as_tensor(v).detach()))
                       for v in log.values()), log
    after = snapshot(model)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith('backbone.') for k in changed)
    assert any(not k.startswith('backbone.') for k in changed)
    for k, p in model.named_parameters():
        if frozen_prefix and k.startswith(frozen_prefix):
            assert not p.requires_grad and torch.equal(before[k], after[k])


def frozen_prefix(cfg):
    """Parameters the config freezes (its stem), or None."""
    bb = cfg.model.backbone
    if bb.type.endswith('ConvToAttention'):  # mmdet's ResNet
        return 'backbone.conv1.' if bb.module.get('frozen_stages',
                                                  -1) >= 0 else None
    return 'backbone.stem.' if bb.get('frozen_stages', -1) >= 0 else None


@pytest.mark.parametrize('path', DET_CONFIGS, ids=name)
def test_det_train_step(path):
    cfg = load_config(path)
    with scope('mmdet'):
        model = MODELS.build(cfg.model)
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
        img, boxes, labels, masks = boxes_image(size=(64, 96),
                                                boxes=((8, 8, 40, 48),
                                                       (50, 10, 90, 40)),
                                                labels=(0, 1))
        data = det_batch(img, boxes, labels, masks)
        check_step(model, optim, data, frozen_prefix(cfg))


@pytest.mark.parametrize('path', HEATMAP_CONFIGS, ids=name)
def test_pose_train_step(path):
    cfg = pose_codec(load_config(path), (64, 64), (16, 16))
    with scope('mmpose'):
        model = MODELS.build(cfg.model)
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
        img, kpts = keypoints_image((64, 64))
        data = pose_batch(img, kpts, (64, 64), (16, 16), copies=2)
        check_step(model, optim, data, None)


def lifter_batch(batch=2, frames=27, joints=17):
    from mmengine.structures import InstanceData
    from mmpose.structures import PoseDataSample
    samples = []
    for _ in range(batch):
        s = PoseDataSample(metainfo=dict(target_root=torch.zeros(3).numpy()))
        labels = InstanceData()
        labels.lifting_target_label = torch.randn(1, joints, 3)
        labels.lifting_target_weight = torch.ones(1, joints)
        s.gt_instance_labels = labels
        samples.append(s)
    return dict(inputs=torch.randn(batch, 2 * joints, frames),
                data_samples=samples)


def test_lifter_train_step():
    cfg = load_config(
        f'{ROOT}/configs/pose3d/'
        'video-pose-lift_temporal-attn-27frm_8xb128-160e_h36m.py')
    with scope('mmpose'):
        model = MODELS.build(cfg.model)
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
        check_step(model, optim, lifter_batch(), None)
        # sequences other than 27 frames (the window shrinks when larger
        # than the sequence)
        model.eval()
        for frames in (1, 5, 81):
            with torch.no_grad():
                out = model.head(model.extract_feat(
                    torch.randn(2, 34, frames)))
            assert out.shape == (2, 17, 3)


def test_volume_config_trains():
    from mmengine.config import Config
    cfg = Config.fromfile(f'{ROOT}/configs/pose/volume-attn_clip-encoder.py')
    model = MODELS.build(cfg.model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(2, 3, 4, 32, 32)
    outs = model(x)
    assert [o.shape for o in outs] == [(2, 48, 4, 8, 8), (2, 96, 4, 4, 4),
                                       (2, 192, 4, 2, 2)]
    sum(o.square().mean() for o in outs).backward()
    for k, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), k
        if 'pos_encoding' in k:  # every block's 3-D offset table learns
            assert p.grad.abs().sum() > 0, k
    opt.step()
