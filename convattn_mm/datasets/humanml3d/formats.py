"""The two skeleton formats of HumanML3D-style motion data.

HumanML3D (Guo et al., CVPR 2022) stores each motion as ``T - 1`` frames of a
redundant feature vector computed from ``T`` frames of ``J`` joint positions
(y up, metres for HumanML3D, millimetres for KIT-ML). For ``J`` joints the
vector has ``12 J - 1`` entries, in this order:

=====================  ============  ==========================================
slice                  size          content (frame t)
=====================  ============  ==========================================
``root_rot_velocity``  1             half the heading change t -> t+1 (rad)
``root_linear_vel``    2             root xz displacement t -> t+1, in the
                                     root-facing frame of t+1
``root_height``        1             root y at t
``ric_positions``      3 (J - 1)     joints 1..J-1 relative to the root's xz,
                                     rotated into the root-facing frame of t
``rotations_6d``       6 (J - 1)     local rotation of each non-root joint
                                     (first two matrix columns)
``local_velocity``     3 J           displacement t -> t+1 of every joint,
                                     rotated into the root-facing frame of t
``foot_contacts``      4             0/1 for the four ``contact_joints``
=====================  ============  ==========================================

HumanML3D (22 SMPL joints, 20 fps): 263 entries. KIT-ML (21 joints, 12.5 fps):
251 entries. The "root-facing frame" turns the world about y so that the
format's forward direction (perpendicular to the hip and shoulder lines, see
:attr:`MotionFormat.face_joints`) is +z.
"""
import dataclasses

import numpy as np

from convattn_mm.utils import check_choice


@dataclasses.dataclass(frozen=True)
class MotionFormat:
    """Skeleton and feature layout of one data set.

    Attributes:
        name (str): ``'humanml3d'`` or ``'kit'``.
        joint_names (tuple[str]): ``J`` names in storage order.
        chains (tuple[tuple[int]]): kinematic chains; each starts at the root
            or at a joint of an earlier chain.
        face_joints (tuple[int]): ``(a, b, c, d)``: the forward direction
            is ``up × across``, ``across = (P_a - P_b) + (P_c - P_d)``.
            HumanML3D: right hip, left hip, right shoulder, left shoulder.
            KIT-ML: joints 11, 16, 5, 8, which HumanML3D's processing calls
            right hip, left hip, right and left shoulder while the KIT-ML
            source files name them LH, RH, LS, RS (see ``joint_names``).
        contact_joints (tuple[int]): the four joints whose contacts are
            stored, in order (HumanML3D: left ankle, left toe, right ankle,
            right toe; KIT-ML: joints 19, 20, 14, 15).
        toe_joints (tuple[int]): the toe joints (for foot skating).
        fps (float): frames per second.
        unit_m (float): metres per unit of the stored positions.
        contact_threshold (float): a foot joint is in contact at frame t when
            its squared displacement t -> t+1 (units²) is below this.
        min_length, max_length (int): the field's length filter: a motion or
            caption segment is kept when ``min_length <= T <= max_length``.
        crop_length (int): the field's training crop (frames).
    """
    name: str
    joint_names: tuple
    chains: tuple
    face_joints: tuple
    contact_joints: tuple
    toe_joints: tuple
    fps: float
    unit_m: float
    contact_threshold: float
    min_length: int
    max_length: int = 199
    crop_length: int = 196

    @property
    def num_joints(self):
        return len(self.joint_names)

    @property
    def feature_dim(self):
        """``12 J - 1``: 263 for HumanML3D, 251 for KIT-ML."""
        return 12 * self.num_joints - 1

    @property
    def parents(self):
        """Parent index of each joint (-1 for the root), from ``chains``."""
        parents = [-1] * self.num_joints
        for chain in self.chains:
            for parent, child in zip(chain[:-1], chain[1:]):
                parents[child] = parent
        return tuple(parents)

    @property
    def slices(self):
        """Name -> ``slice`` of each feature group (see the module doc)."""
        j = self.num_joints
        sizes = [('root_rot_velocity', 1), ('root_linear_velocity', 2),
                 ('root_height', 1), ('ric_positions', 3 * (j - 1)),
                 ('rotations_6d', 6 * (j - 1)), ('local_velocity', 3 * j),
                 ('foot_contacts', 4)]
        out, start = {}, 0
        for key, size in sizes:
            out[key] = slice(start, start + size)
            start += size
        return out


SMPL_JOINTS = (
    'pelvis', 'left_hip', 'right_hip', 'spine1', 'left_knee', 'right_knee',
    'spine2', 'left_ankle', 'right_ankle', 'spine3', 'left_foot', 'right_foot',
    'neck', 'left_collar', 'right_collar', 'head', 'left_shoulder',
    'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist')

# the MMM names of the KIT-ML source files: root, BP, BT, BLN, BUN, LS, LE,
# LW, RS, RE, RW, LH, LK, LA, LMrot, LF, RH, RK, RA, RMrot, RF
KIT_JOINTS = (
    'root', 'lower_back', 'upper_back', 'lower_neck', 'upper_neck',
    'left_shoulder', 'left_elbow', 'left_wrist',
    'right_shoulder', 'right_elbow', 'right_wrist',
    'left_hip', 'left_knee', 'left_ankle', 'left_metatarsal', 'left_toe',
    'right_hip', 'right_knee', 'right_ankle', 'right_metatarsal',
    'right_toe')

MOTION_FORMATS = {
    'humanml3d': MotionFormat(
        name='humanml3d', joint_names=SMPL_JOINTS,
        chains=((0, 2, 5, 8, 11), (0, 1, 4, 7, 10), (0, 3, 6, 9, 12, 15),
                (9, 14, 17, 19, 21), (9, 13, 16, 18, 20)),
        face_joints=(2, 1, 17, 16), contact_joints=(7, 10, 8, 11),
        toe_joints=(10, 11),
        fps=20.0, unit_m=1.0, contact_threshold=0.002, min_length=40),
    'kit': MotionFormat(
        name='kit', joint_names=KIT_JOINTS,
        chains=((0, 11, 12, 13, 14, 15), (0, 16, 17, 18, 19, 20),
                (0, 1, 2, 3, 4), (3, 5, 6, 7), (3, 8, 9, 10)),
        face_joints=(11, 16, 5, 8), contact_joints=(19, 20, 14, 15),
        toe_joints=(15, 20),
        fps=12.5, unit_m=1e-3, contact_threshold=0.002e6, min_length=24),
}


# Rest pose of the fixture's SMPL-like skeleton (metres; y up, facing +z, the
# body's left on +x): offset of each joint from its parent.
SMPL_REST_OFFSETS = (
    (0.0, 0.0, 0.0), (0.06, -0.09, 0.0), (-0.06, -0.09, 0.0),
    (0.0, 0.11, -0.01), (0.0, -0.38, 0.0), (0.0, -0.38, 0.0),
    (0.0, 0.13, 0.01), (0.0, -0.40, -0.03), (0.0, -0.40, -0.03),
    (0.0, 0.05, 0.0), (0.0, -0.05, 0.12), (0.0, -0.05, 0.12),
    (0.0, 0.21, -0.02), (0.08, 0.12, -0.01), (-0.08, 0.12, -0.01),
    (0.0, 0.09, 0.05), (0.12, 0.04, -0.01), (-0.12, 0.04, -0.01),
    (0.26, 0.0, 0.0), (-0.26, 0.0, 0.0), (0.25, 0.0, 0.0), (-0.25, 0.0, 0.0))

# Each KIT-ML joint as a weighted sum of SMPL joints (the metatarsal lies
# half-way along the foot, a rigid segment, so every bone length stays fixed).
SMPL_TO_KIT = (
    {0: 1.0}, {3: 1.0}, {9: 1.0}, {12: 1.0}, {15: 1.0},
    {16: 1.0}, {18: 1.0}, {20: 1.0}, {17: 1.0}, {19: 1.0}, {21: 1.0},
    {1: 1.0}, {4: 1.0}, {7: 1.0}, {7: 0.5, 10: 0.5}, {10: 1.0},
    {2: 1.0}, {5: 1.0}, {8: 1.0}, {8: 0.5, 11: 0.5}, {11: 1.0})


def smpl_rest_joints():
    """Rest-pose positions ``[22, 3]`` (m) of the SMPL-like skeleton, root at
    the origin (forward kinematics of :data:`SMPL_REST_OFFSETS`)."""
    parents = MOTION_FORMATS['humanml3d'].parents
    joints = np.zeros((len(SMPL_REST_OFFSETS), 3))
    for j in range(1, len(joints)):
        joints[j] = joints[parents[j]] + SMPL_REST_OFFSETS[j]
    return joints


def smpl_to_kit(joints):
    """``[..., 22, 3]`` SMPL joints -> ``[..., 21, 3]`` KIT-ML joints, same
    unit (see :data:`SMPL_TO_KIT`)."""
    weights = np.zeros((len(SMPL_TO_KIT), len(SMPL_JOINTS)))
    for k, mix in enumerate(SMPL_TO_KIT):
        for j, w in mix.items():
            weights[k, j] = w
    return np.einsum('kj,...jc->...kc', weights, joints)


def rest_offsets(motion_format):
    """``[J, 3]`` offsets of each joint from its parent in the rest pose of
    the fixture skeleton, in the format's unit (zeros for the root). Their
    directions are the rest directions that the stored 6-D rotations turn."""
    fmt = get_motion_format(motion_format)
    joints = smpl_rest_joints()
    if fmt.name == 'kit':
        joints = smpl_to_kit(joints)
    joints = joints / fmt.unit_m
    parents = np.array(fmt.parents)
    offsets = joints - joints[np.maximum(parents, 0)]
    offsets[parents < 0] = 0
    return offsets


def get_motion_format(motion_format):
    """``'humanml3d'``/``'kit'`` (or a :class:`MotionFormat`) -> the format."""
    if isinstance(motion_format, MotionFormat):
        return motion_format
    check_choice(motion_format, MOTION_FORMATS, 'motion_format')
    return MOTION_FORMATS[motion_format]
