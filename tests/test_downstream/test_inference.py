"""Inference end to end on a real photograph shipped inside a PyPI package
(scikit-image's astronaut, 512x512 RGB) through mmdet's and mmpose's own
inference APIs; and backbone memory at 800x1333 (window attention: no
quadratic growth)."""
import pytest

from .synthetic import require_stack

require_stack()

import numpy as np  # noqa: E402

from .synthetic import ROOT, load_config  # noqa: E402

skimage_data = pytest.importorskip(
    'skimage.data', reason='scikit-image ships the sample photographs')


def astronaut_bgr():
    img = skimage_data.astronaut()  # RGB uint8 [512, 512, 3]
    return np.ascontiguousarray(img[..., ::-1])


def test_detector_on_photograph():
    from mmdet.apis import inference_detector, init_detector
    cfg = load_config(f'{ROOT}/configs/det/retinanet_convattn-t_fpn_1x_coco.py')
    for step in cfg.test_dataloader.dataset.pipeline:
        if step.type == 'Resize':
            step.scale = (512, 512)  # the photo's own size
    model = init_detector(cfg, checkpoint=None, device='cpu')
    result = inference_detector(model, astronaut_bgr())
    inst = result.pred_instances
    assert result.metainfo['ori_shape'] == (512, 512)
    assert inst.bboxes.ndim == 2 and inst.bboxes.shape[1] == 4
    assert len(inst.bboxes) == len(inst.scores) == len(inst.labels) > 0
    assert (inst.bboxes >= -1).all() and (inst.bboxes <= 513).all()
    assert ((inst.scores >= 0) & (inst.scores <= 1)).all()


def test_pose_estimator_on_photograph():
    from mmpose.apis import inference_topdown, init_model
    cfg = load_config(
        f'{ROOT}/configs/pose/td-hm_convattn-t_8xb64-210e_coco-256x192.py')
    model = init_model(cfg, checkpoint=None, device='cpu')
    box = np.array([[140, 20, 380, 500]], np.float32)  # the astronaut
    results = inference_topdown(model, astronaut_bgr(), box)
    assert len(results) == 1
    kpts = results[0].pred_instances.keypoints
    scores = results[0].pred_instances.keypoint_scores
    assert kpts.shape == (1, 17, 2) and scores.shape == (1, 17)
    # decoded back into image coordinates: inside the crop the model saw
    # (the box widened to 192:256 and padded by 1.25), give or take one
    # heatmap cell (sub-pixel refinement and the flip test's shift)
    centre = np.asarray(results[0].input_center).reshape(-1, 2)[0]
    scale = np.asarray(results[0].input_scale).reshape(-1, 2)[0]
    np.testing.assert_allclose(centre, [260, 260])
    np.testing.assert_allclose(scale, [480 * 0.75 * 1.25, 480 * 1.25])
    cell = scale / np.array([48, 64])
    assert (np.abs(kpts[0] - centre) <= scale / 2 + cell + 1e-3).all()
