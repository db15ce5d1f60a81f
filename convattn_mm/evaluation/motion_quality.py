"""Physical plausibility measures of generated motion (no evaluator).

All take joints ``[T, J, 3]`` in metres, y up, the floor at y = 0 (where
HumanML3D's processing puts it), and the frame rate.
"""
import numpy as np
from mmengine.evaluator import BaseMetric

from convattn_mm.datasets.humanml3d.features import features_to_joints
from convattn_mm.datasets.humanml3d.formats import get_motion_format
from convattn_mm.registry import METRICS

from .text2motion_metric import _as_numpy, sample_get


def foot_skating(joints, foot_joints, fps, contact_height=0.05,
                 skate_speed=0.5):
    """Horizontal speed of feet while they touch the floor.

    A foot joint is in contact over the step t -> t+1 when its height is
    below ``contact_height`` at both frames; its speed over the step is
    ``|xz_{t+1} - xz_t| * fps``.

    Returns:
        tuple: (mean speed over contact steps in m/s, 0 without contact;
        fraction of contact steps faster than ``skate_speed`` m/s).
    """
    feet = np.asarray(joints)[:, list(foot_joints)]
    low = feet[..., 1] < contact_height
    contact = low[1:] & low[:-1]
    speed = np.linalg.norm(np.diff(feet[..., [0, 2]], axis=0), axis=-1) * fps
    if not contact.any():
        return 0.0, 0.0
    return (float(speed[contact].mean()),
            float((speed[contact] > skate_speed).mean()))


def jerk(joints, fps):
    """Mean magnitude of the third time derivative of every joint
    (``|Δ³x| fps³``, m/s³); 0 for fewer than 4 frames."""
    joints = np.asarray(joints)
    if len(joints) < 4:
        return 0.0
    third = np.diff(joints, n=3, axis=0) * fps ** 3
    return float(np.linalg.norm(third, axis=-1).mean())


def ground_penetration(joints):
    """Mean over frames of how far the lowest joint is below the floor
    (``max(0, -min_j y)``, m)."""
    lowest = np.asarray(joints)[..., 1].min(-1)
    return float(np.clip(-lowest, 0, None).mean())


@METRICS.register_module()
class MotionQualityMetric(BaseMetric):
    """Foot skating, jerk, ground penetration and length of generated
    motions, from their features (decoded with
    :func:`~convattn_mm.datasets.humanml3d.features_to_joints`) or joints.

    Each data sample provides ``pred_joints`` (``[T, J, 3]``, the format's
    unit) or ``pred_motion`` (features ``[T, D]``, denormalised), and
    optionally ``pred_length`` (frames). Per-sample values are averaged.

    Metrics (``prefix/`` before each): ``foot_skating`` (m/s over contact
    steps of the toe joints), ``foot_skating_ratio`` (fraction of contact
    steps above ``skate_speed``), ``jerk`` (m/s³), ``ground_penetration``
    (m), ``length_frames``, ``length_s``.

    Args:
        motion_format (str): ``'humanml3d'`` or ``'kit'`` (joints, unit,
            fps).
        contact_height (float): toe height (m) below which a toe touches
            the floor. Default 0.05.
        skate_speed (float): speed (m/s) above which a contact step counts
            as skating. Default 0.5 (2.5 cm per frame at 20 fps).
    """
    default_prefix = 'motion'

    def __init__(self, motion_format='humanml3d', contact_height=0.05,
                 skate_speed=0.5, collect_device='cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.fmt = get_motion_format(motion_format)
        for name, value in (('contact_height', contact_height),
                            ('skate_speed', skate_speed)):
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f'{name}={value!r} must be a number > 0')
        self.contact_height, self.skate_speed = contact_height, skate_speed

    def _joints(self, sample):
        joints = sample_get(sample, 'pred_joints')
        if joints is None:
            motion = sample_get(sample, 'pred_motion')
            if motion is None:
                raise KeyError('MotionQualityMetric: a data sample has '
                               'neither "pred_joints" nor "pred_motion"')
            joints = features_to_joints(_as_numpy(motion).astype(np.float64),
                                        self.fmt)
        joints = _as_numpy(joints)
        length = int(sample_get(sample, 'pred_length', len(joints)))
        return joints[:length] * self.fmt.unit_m

    def process(self, data_batch, data_samples):
        fps = self.fmt.fps
        toes = self.fmt.toe_joints
        for sample in data_samples:
            joints = self._joints(sample)
            skate, ratio = foot_skating(joints, toes, fps,
                                        self.contact_height, self.skate_speed)
            self.results.append(dict(
                foot_skating=skate, foot_skating_ratio=ratio,
                jerk=jerk(joints, fps),
                ground_penetration=ground_penetration(joints),
                length_frames=float(len(joints)),
                length_s=len(joints) / fps))

    def compute_metrics(self, results):
        return {k: float(np.mean([r[k] for r in results]))
                for k in results[0]}
