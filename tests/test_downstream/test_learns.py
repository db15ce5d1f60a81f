"""The downstream models can learn: a short run on one synthetic image with a
few clear objects / keypoints fits it (detection: every object found with
IoU > 0.5; pose: PCK@0.1 > 0.8). Small backbones of the configs' types."""
import pytest

from .synthetic import require_stack

require_stack()

import torch  # noqa: E402
from mmengine.registry import MODELS  # noqa: E402

from .synthetic import (ROOT, box_iou, boxes_image, det_batch,  # noqa: E402
                        keypoints_image, load_config, pose_batch, pose_codec,
                        scope, shrink_backbone)


def fit(model, data, steps, lr, cosine=False):
    """AdamW for ``steps`` steps on ``data``; ``cosine`` decays the rate to
    0 over the run, so the end of the run settles instead of oscillating."""
    from mmengine.optim import build_optim_wrapper
    optim = build_optim_wrapper(
        model, dict(type='OptimWrapper',
                    optimizer=dict(type='AdamW', lr=lr, weight_decay=0.0)))
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(optim.optimizer,
                                                        steps)
             if cosine else None)
    model.train()
    for _ in range(steps):
        log = model.train_step(data, optim)
        if sched is not None:
            sched.step()
    return log


@pytest.mark.slow
def test_retinanet_fits_one_image():
    """Fails on one machine, passed on another (same kind), and seed 1
    failed here: at a constant lr of 2e-3 for 150 steps the run had not
    settled (class 2 IoU 0.0 at steps 100 and 150 with seed 1; with seed 1
    the loss rose again from 0.18 at step 150 to 0.63 at step 300, class 1
    IoU falling to 0.39), so a different rounding order (another CPU's
    kernels, thread count) could land on either side. The run is seeded
    here, longer, and its lr decays to 0 (cosine) so the end settles."""
    torch.manual_seed(0)
    cfg = shrink_backbone(load_config(
        f'{ROOT}/configs/det/retinanet_convattn-t_fpn_1x_coco.py'))
    cfg.model.backbone.drop_path_rate = 0.0  # memorising, not regularising
    cfg.model.neck.out_channels = 64
    cfg.model.bbox_head.in_channels = 64
    cfg.model.bbox_head.feat_channels = 64
    img, boxes, labels, _ = boxes_image((128, 128))
    with scope('mmdet'):
        model = MODELS.build(cfg.model)
        model.init_weights()
        data = det_batch(img, boxes, labels, copies=2)
        fit(model, data, steps=250, lr=2e-3, cosine=True)
        model.eval()
        with torch.no_grad():
            pred = model.test_step(det_batch(img, boxes, labels))[0]
    inst = pred.pred_instances
    for box, label in zip(boxes, labels):
        mine = inst.labels == int(label)
        assert mine.any(), f'class {label} not detected'
        best = inst.bboxes[mine][inst.scores[mine].argmax()]
        iou = box_iou(best[None], box[None]).item()
        assert iou > 0.5, (label, box, best, iou)


@pytest.mark.parametrize('config', [
    'td-hm_convattn-t_8xb64-210e_coco-256x192.py',
    'td-hm_saresnet50_8xb64-210e_coco-256x192.py'
])
def test_heatmap_pose_fits_one_image(config):
    size, hm = (64, 64), (16, 16)
    cfg = shrink_backbone(pose_codec(
        load_config(f'{ROOT}/configs/pose/{config}'), size, hm))
    cfg.model.backbone.drop_path_rate = 0.0
    cfg.model.head.deconv_out_channels = (32, 32, 32)
    cfg.model.test_cfg.flip_test = False
    img, kpts = keypoints_image(size)
    with scope('mmpose'):
        model = MODELS.build(cfg.model)
        model.init_weights()
        data = pose_batch(img, kpts, size, hm, copies=2)
        fit(model, data, steps=80, lr=2e-3)
        model.eval()
        with torch.no_grad():
            pred = model.test_step(pose_batch(img, kpts, size, hm))[0]
    got = torch.as_tensor(pred.pred_instances.keypoints[0])
    dist = (got - torch.as_tensor(kpts[0])).norm(dim=-1)
    pck = (dist < 0.1 * max(size)).float().mean().item()
    assert pck > 0.8, (pck, dist)
