"""Evaluator-free measures: foot skating, jerk, ground penetration, length."""
import re

import numpy as np
import pytest

from convattn_mm.datasets.humanml3d import (generate_motion,
                                            joints_to_features)
from convattn_mm.evaluation import (MotionQualityMetric, foot_skating,
                                    ground_penetration, jerk)

TOES = (10, 11)


def _standing(frames=40):
    joints = np.zeros((frames, 22, 3))
    joints[..., 1] = 0.5          # every joint half a metre up ...
    joints[:, TOES, 1] = 0.0      # ... but the toes, on the floor
    return joints


def test_foot_skating_known_answer():
    fps = 20.0
    joints = _standing()
    t = np.arange(len(joints)) / fps
    joints[:, 10, 0] = 0.8 * t                 # left toe slides at 0.8 m/s
    joints[:, 11, 2] = 0.3 * t                 # right toe at 0.3 m/s
    speed, ratio = foot_skating(joints, TOES, fps, skate_speed=0.5)
    assert speed == pytest.approx((0.8 + 0.3) / 2)
    assert ratio == pytest.approx(0.5)
    # a toe in the air does not count
    joints[:, 11, 1] = 0.2
    speed, ratio = foot_skating(joints, TOES, fps)
    assert (speed, ratio) == (pytest.approx(0.8), 1.0)
    joints[:, 10, 1] = 0.2
    assert foot_skating(joints, TOES, fps) == (0.0, 0.0)


def test_jerk_and_penetration_known_answers():
    fps = 20.0
    joints = _standing()
    t = np.arange(len(joints)) / fps
    joints[..., 0] = 0.7 * t[:, None] ** 3     # x = a t³: jerk 6a everywhere
    assert jerk(joints, fps) == pytest.approx(6 * 0.7, rel=1e-6)
    joints[..., 2] = 5.0 * t[:, None] ** 2     # + constant acceleration
    assert jerk(joints, fps) == pytest.approx(6 * 0.7, rel=1e-6)
    assert jerk(joints[:3], fps) == 0.0
    assert ground_penetration(joints) == 0.0
    joints[::2, 10, 1] = -0.02                 # half the frames 2 cm deep
    assert ground_penetration(joints) == pytest.approx(0.01)


def test_metric_on_features_and_joints():
    from mmengine.evaluator import Evaluator
    stand = generate_motion([dict(action='stand', duration=3.0)])
    walk = generate_motion([dict(action='walk', duration=3.0)])
    evaluator = Evaluator(dict(type='convattn_mm.MotionQualityMetric'))
    evaluator.process([dict(pred_motion=joints_to_features(stand)),
                       dict(pred_motion=joints_to_features(walk),
                            pred_length=40)])
    out = evaluator.evaluate(2)
    assert out['motion/length_frames'] == pytest.approx((59 + 40) / 2)
    assert out['motion/length_s'] == pytest.approx((59 + 40) / 2 / 20)
    assert out['motion/ground_penetration'] < 1e-6
    assert out['motion/jerk'] > 0
    still = MotionQualityMetric()
    still.process(None, [dict(pred_motion=joints_to_features(stand))])
    res = still.compute_metrics(still.results)
    assert res['foot_skating'] == 0.0 and res['jerk'] < 1e-6
    # KIT-ML joints in millimetres are measured in metres
    metric = MotionQualityMetric('kit')
    joints = np.zeros((30, 21, 3))
    joints[..., 1] = 500.0
    joints[:, [15, 20], 1] = 0.0
    joints[:, 20, 0] = 800.0 * np.arange(30) / 12.5    # 0.8 m/s
    # a data element (as a model's test_step returns) works like a dict
    from mmengine.structures import BaseDataElement
    metric.process(None, [BaseDataElement(pred_joints=joints,
                                          metainfo=dict(pred_length=25))])
    res = metric.compute_metrics(metric.results)
    assert res['foot_skating'] == pytest.approx(0.4)
    assert res['length_s'] == pytest.approx(25 / 12.5)
    with pytest.raises(ValueError, match=re.escape(
            'contact_height=0 must be a number > 0')):
        MotionQualityMetric(contact_height=0)
    with pytest.raises(KeyError, match='neither "pred_joints" nor'):
        metric.process(None, [dict(tokens=[])])
