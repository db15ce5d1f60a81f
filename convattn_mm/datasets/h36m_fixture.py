"""A small Human3.6M-format data set written by a kinematic motion generator.

Nothing is downloaded: a 17-joint skeleton in H36M's joint order is driven
by hand-written motions (walking on a curve, turning and pointing, waving,
sitting down), seen by four cameras in H36M's ``cameras.pkl`` format, and
saved exactly as mmpose's ``tools/dataset_converters/preprocess_h36m.py``
writes the real data set, so that mmpose's ``Human36mDataset``, codecs,
transforms and ``MPJPE`` metric read it unchanged::

    ROOT/annotation_body3d/cameras.pkl
        {(subject, camera_id): dict(R [3, 3], T [3, 1] (metres), c [2, 1],
         f [2, 1], k [3, 1], p [2, 1], w, h, name, id)}
    ROOT/annotation_body3d/fps50/h36m_{train,test}.npz
        imgname [N] 'S1/S1_Walking.54138969/S1_Walking.54138969_000001.jpg'
        S       [N, 17, 4]  camera coordinates in metres + visibility 1
        part    [N, 17, 3]  pixels + visibility 1
        center  [N, 2], scale [N]  (box centre; 1.2 * box side / 200)
    ROOT/annotation_body3d/fps50/joint2d_noisy_{train,test}.npy  (optional)
        [N, 17, 3] 2-D keypoints with Gaussian pixel noise, for
        ``keypoint_2d_src='detection'``

Cameras follow mmpose's ``SimpleCamera``: ``R`` maps camera to world
(columns are the camera axes in world coordinates), ``T`` is the camera
centre in world coordinates, so ``X_cam = Rᵀ (X_world − T)`` and
``u = f · X_cam[:2] / X_cam[2] + c``.

Subjects are split as H36M's protocol 1 names them (train S1, S5, S6, S7,
S8; test S9, S11), a subset of each by default; the test subjects' bodies
and motions are drawn independently of the training ones.
"""
import os
import os.path as osp
import pickle

import numpy as np

from convattn_mm.utils import check_choice

#: H36M's 17 joints and the parent of each (-1: the root)
JOINTS = ('root', 'right_hip', 'right_knee', 'right_foot', 'left_hip',
          'left_knee', 'left_foot', 'spine', 'thorax', 'neck_base', 'head',
          'left_shoulder', 'left_elbow', 'left_wrist', 'right_shoulder',
          'right_elbow', 'right_wrist')
PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
#: bone vectors from the parent at rest, body frame (x forward, y left,
#: z up), metres
REST_BONES = np.array(
    [[0, 0, 0], [0, -0.13, 0], [0, 0, -0.45], [0, 0, -0.44], [0, 0.13, 0],
     [0, 0, -0.45], [0, 0, -0.44], [0, 0, 0.23], [0, 0, 0.25],
     [0.02, 0, 0.10], [0.04, 0, 0.12], [0, 0.17, 0], [0, 0, -0.28],
     [0, 0, -0.25], [0, -0.17, 0], [0, 0, -0.28], [0, 0, -0.25]],
    dtype=np.float64)
ACTIONS = ('Walking', 'Directions', 'Greeting', 'SittingDown')
#: H36M's four camera ids and image sizes (w, h)
CAMERAS = (('54138969', 1000, 1002), ('55011271', 1000, 1000),
           ('58860488', 1000, 1000), ('60457274', 1000, 1002))
TRAIN_SUBJECTS = ('S1', 'S5', 'S6', 'S7', 'S8')
TEST_SUBJECTS = ('S9', 'S11')
FPS = 50
SCALE_FACTOR = 1.2  # preprocess_h36m.py's box enlargement


def _rot(axis, angle):
    """Rotation matrices ``[T, 3, 3]`` about a body axis (0 x, 1 y, 2 z)."""
    angle = np.asarray(angle, np.float64)
    c, s = np.cos(angle), np.sin(angle)
    R = np.zeros(angle.shape + (3, 3))
    i, j = [a for a in range(3) if a != axis]
    R[..., axis, axis] = 1
    R[..., i, i], R[..., j, j] = c, c
    R[..., i, j], R[..., j, i] = -s, s
    return R


def forward_kinematics(angles, root, heading, bones):
    """World joints from joint angles.

    Args:
        angles (dict[str, ndarray[T]]): radians; keys ``hip_{l,r}``,
            ``knee_{l,r}`` (pitch about the body's y axis, positive swings
            forward), ``shoulder_{l,r}`` (pitch), ``abduct_{l,r}`` (roll
            away from the body), ``elbow_{l,r}``, ``lean`` (torso pitch),
            ``twist`` (torso yaw).
        root (ndarray[T, 3]): pelvis position, world metres (z up).
        heading (ndarray[T]): body yaw in the world, radians.
        bones (ndarray[17, 3]): bone vectors at rest (body frame).

    Returns:
        ndarray[T, 17, 3]: joint positions, world metres.
    """
    T = root.shape[0]
    eye = np.broadcast_to(np.eye(3), (T, 3, 3))
    local = [eye] * 17  # rotation applied to each joint's own bone
    # _rot(1, a) swings a bone hanging down forward (+x) by a; a bone
    # pointing up (the torso) backward
    for side, (knee, elbow) in dict(r=(2, 15), l=(5, 12)).items():
        sign = 1.0 if side == 'l' else -1.0  # abduction: away from the body
        local[knee] = _rot(1, angles[f'hip_{side}'])  # the thigh
        local[knee + 1] = _rot(1, -angles[f'knee_{side}'])  # the shin
        local[elbow] = _rot(1, angles[f'shoulder_{side}']) @ _rot(
            0, sign * angles[f'abduct_{side}'])  # the upper arm
        local[elbow + 1] = _rot(1, angles[f'elbow_{side}'])  # the forearm
    local[8] = _rot(1, -angles['lean']) @ _rot(2, angles['twist'])
    world_R = [None] * 17
    pos = np.zeros((T, 17, 3))
    body = _rot(2, heading)
    for j, p in enumerate(PARENTS):
        if p < 0:
            world_R[j] = body
            pos[:, j] = root
            continue
        world_R[j] = world_R[p] @ local[j]
        pos[:, j] = pos[:, p] + np.einsum('tij,j->ti', world_R[j], bones[j])
    return pos


def _smooth_bumps(t, rate, rng):
    """A smooth 0..1 signal with random bumps (raise-and-lower cycles)."""
    phase = rng.uniform(0, 2 * np.pi)
    return 0.5 - 0.5 * np.cos(2 * np.pi * rate * t + phase)


def generate_motion(action, num_frames, rng, bones, fps=FPS):
    """One sequence of ``action`` in world coordinates: ``[T, 17, 3]``.

    Every action draws its own frequencies, amplitudes, phases, start
    position and heading from ``rng``.
    """
    check_choice(action, ACTIONS, 'action')
    t = np.arange(num_frames) / fps
    u = lambda lo, hi: rng.uniform(lo, hi)  # noqa: E731
    zero = np.zeros(num_frames)
    ang = {k: zero.copy() for k in (
        'hip_l', 'hip_r', 'knee_l', 'knee_r', 'shoulder_l', 'shoulder_r',
        'abduct_l', 'abduct_r', 'elbow_l', 'elbow_r', 'lean', 'twist')}
    for side in 'lr':
        ang[f'abduct_{side}'] += u(0.05, 0.15)
        ang[f'elbow_{side}'] += u(0.1, 0.3)
    leg = -bones[2, 2] - bones[3, 2]
    height = np.full(num_frames, leg)
    start = rng.uniform(-0.3, 0.3, 2)
    heading0 = u(-np.pi, np.pi)
    if action == 'Walking':
        freq, amp = u(0.8, 1.1), u(0.35, 0.5)
        speed = freq * 1.3 * amp
        radius = u(0.8, 1.1)  # walking in a circle, either way round
        turn = rng.choice([-1.0, 1.0]) * speed / radius
        phi = 2 * np.pi * freq * t + u(0, 2 * np.pi)
        ang['hip_l'], ang['hip_r'] = amp * np.sin(phi), -amp * np.sin(phi)
        ang['knee_l'] = 1.1 * amp * np.clip(-np.cos(phi), 0, None)
        ang['knee_r'] = 1.1 * amp * np.clip(np.cos(phi), 0, None)
        swing = u(0.25, 0.45)
        ang['shoulder_l'] = -swing * np.sin(phi)
        ang['shoulder_r'] = swing * np.sin(phi)
        ang['elbow_l'] += 0.3 + 0.2 * np.clip(-np.sin(phi), 0, None)
        ang['elbow_r'] += 0.3 + 0.2 * np.clip(np.sin(phi), 0, None)
        ang['lean'] += u(0.03, 0.1)
        heading = heading0 + turn * t
        # p' = speed (cos, sin)(heading): a circle around `start`
        xy = start + speed / turn * np.stack(
            [np.sin(heading), -np.cos(heading)], 1)
        height = height * np.cos(amp * np.sin(phi)) + 0.02 * np.cos(2 * phi)
    elif action == 'Directions':
        heading = heading0 + u(0.8, 1.6) * np.sin(
            2 * np.pi * u(0.15, 0.3) * t)
        point = _smooth_bumps(t, u(0.2, 0.4), rng)
        side = rng.choice(['l', 'r'])
        ang[f'shoulder_{side}'] = 1.4 * point
        ang[f'elbow_{side}'] *= 1 - point
        ang['twist'] = 0.3 * np.sin(2 * np.pi * u(0.2, 0.4) * t)
        xy = np.broadcast_to(start, (num_frames, 2))
    elif action == 'Greeting':
        heading = np.full(num_frames, heading0)
        raise_ = _smooth_bumps(t, u(0.15, 0.3), rng)
        side = rng.choice(['l', 'r'])
        ang[f'abduct_{side}'] += 2.2 * raise_
        ang[f'elbow_{side}'] = raise_ * (
            0.9 + 0.5 * np.sin(2 * np.pi * u(1.2, 2.0) * t))
        ang['lean'] = 0.35 * _smooth_bumps(t, u(0.2, 0.35), rng) * (
            1 - raise_)
        xy = np.broadcast_to(start, (num_frames, 2))
    else:  # SittingDown: squat cycles, feet on the floor
        heading = np.full(num_frames, heading0)
        sit = _smooth_bumps(t, u(0.15, 0.3), rng)
        knee = 1.7 * sit
        ang['knee_l'] = ang['knee_r'] = knee
        ang['hip_l'] = ang['hip_r'] = 0.9 * knee
        ang['lean'] = 0.5 * sit
        ang['shoulder_l'] = ang['shoulder_r'] = 0.6 * sit
        thigh, shin = -bones[2, 2], -bones[3, 2]
        height = thigh * np.cos(0.9 * knee) + shin * np.cos(0.1 * knee)
        xy = np.broadcast_to(start, (num_frames, 2))
    root = np.concatenate([xy, height[:, None] + 0.1], 1)
    return forward_kinematics(ang, root, heading, bones)


def make_cameras(subjects, rng):
    """Four cameras per subject in the ``cameras.pkl`` format (module doc):
    on a circle of 4.5–5.5 m around the room's centre, 1.2–1.8 m high,
    looking at the centre, focal length ~1145 px."""
    cameras = {}
    for s in subjects:
        for i, (cam_id, w, h) in enumerate(CAMERAS):
            angle = np.pi / 4 + i * np.pi / 2 + rng.uniform(-0.15, 0.15)
            radius = rng.uniform(4.5, 5.5)
            centre = np.array([radius * np.cos(angle),
                               radius * np.sin(angle),
                               rng.uniform(1.2, 1.8)])
            target = np.array([0.0, 0.0, 0.9])
            z = target - centre
            z /= np.linalg.norm(z)
            x = np.cross(z, [0.0, 0.0, 1.0])
            x /= np.linalg.norm(x)
            y = np.cross(z, x)  # image y points down
            cameras[(s, cam_id)] = dict(
                R=np.stack([x, y, z], 1), T=centre.reshape(3, 1),
                c=np.array([[w / 2 + rng.uniform(-10, 10)],
                            [h / 2 + rng.uniform(-10, 10)]]),
                f=np.full((2, 1), 1145.0) + rng.uniform(-5, 5, (2, 1)),
                k=np.zeros((3, 1)), p=np.zeros((2, 1)), w=w, h=h,
                name=f'camera{i + 1}', id=cam_id)
    return cameras


def world_to_camera(points, camera):
    """``X_cam = Rᵀ (X_world − T)`` for points ``[..., 3]``."""
    return (points - camera['T'][:, 0]) @ camera['R']


def camera_to_pixel(points, camera):
    """Pinhole projection ``[..., 3] -> [..., 2]`` pixels (no
    distortion)."""
    return points[..., :2] / points[..., 2:] * camera['f'][:, 0] + \
        camera['c'][:, 0]


def _split_arrays(subjects, actions, cameras, num_frames, cam_ids, rng,
                  noise_2d):
    names, S, part, noisy = [], [], [], []
    for subj in subjects:
        bones = REST_BONES * rng.uniform(0.9, 1.1)
        bones = bones * rng.uniform(0.95, 1.05, (17, 1))
        for action in actions:
            world = generate_motion(action, num_frames, rng, bones)
            for cam_id in cam_ids:
                cam = cameras[(subj, cam_id)]
                xyz = world_to_camera(world, cam)
                uv = camera_to_pixel(xyz, cam)
                base = f'{subj}_{action}.{cam_id}'
                names += [f'{subj}/{base}/{base}_{i + 1:06d}.jpg'
                          for i in range(num_frames)]
                one = np.ones(xyz.shape[:2] + (1, ))
                S.append(np.concatenate([xyz, one], -1))
                part.append(np.concatenate([uv, one], -1))
                noisy.append(np.concatenate(
                    [uv + rng.normal(0, noise_2d, uv.shape), one], -1))
    part = np.concatenate(part).astype(np.float32)
    lo, hi = part[..., :2].min(1), part[..., :2].max(1)
    return dict(imgname=np.array(names),
                center=((lo + hi) / 2).astype(np.float32),
                scale=(SCALE_FACTOR * (hi - lo).max(1) / 200).astype(
                    np.float32),
                part=part,
                S=np.concatenate(S).astype(np.float32)), \
        np.concatenate(noisy).astype(np.float32)


def write_h36m_fixture(root,
                       train_subjects=('S1', 'S5', 'S6'),
                       test_subjects=TEST_SUBJECTS,
                       actions=ACTIONS,
                       num_frames=300,
                       num_cameras=2,
                       noise_2d=None,
                       seed=0):
    """Write the fixture under ``root`` (module doc) and return its paths.

    Args:
        root (str): directory (created); configs use it as ``data_root``.
        train_subjects, test_subjects (sequence[str]): disjoint subject
            names (``'S<n>'``).
        actions (sequence[str]): from :data:`ACTIONS`.
        num_frames (int): frames per sequence (50 fps).
        num_cameras (int): cameras per subject, 1-4 (H36M's ids, in order).
        noise_2d (float, optional): also write ``joint2d_noisy_{split}.npy``
            with this Gaussian pixel noise on the 2-D keypoints.
        seed (int): everything is drawn from ``numpy.random.default_rng``.

    Returns:
        dict: ``cameras``, ``train``, ``test`` (and ``noisy_train``,
        ``noisy_test``) paths relative to ``root``.

    Size: ``N = subjects · actions · cameras · num_frames`` rows of 476
    bytes (the defaults: 24,000 frames, 11 MB).
    """
    train_subjects, test_subjects = tuple(train_subjects), tuple(
        test_subjects)
    if set(train_subjects) & set(test_subjects):
        raise ValueError(f'train_subjects={train_subjects} and '
                         f'test_subjects={test_subjects} overlap')
    for a in actions:
        check_choice(a, ACTIONS, 'actions')
    if not 1 <= num_cameras <= len(CAMERAS):
        raise ValueError(f'num_cameras={num_cameras!r}: expected 1-4')
    if not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f'num_frames={num_frames!r}: expected an int >= 1')
    rng = np.random.default_rng(seed)
    ann = osp.join(root, 'annotation_body3d')
    os.makedirs(osp.join(ann, f'fps{FPS}'), exist_ok=True)
    cameras = make_cameras(train_subjects + test_subjects, rng)
    out = dict(cameras='annotation_body3d/cameras.pkl')
    with open(osp.join(root, out['cameras']), 'wb') as f:
        pickle.dump(cameras, f)
    cam_ids = [c[0] for c in CAMERAS[:num_cameras]]
    for split, subjects in (('train', train_subjects),
                            ('test', test_subjects)):
        arrays, noisy = _split_arrays(subjects, actions, cameras, num_frames,
                                      cam_ids, rng, noise_2d or 0.0)
        out[split] = f'annotation_body3d/fps{FPS}/h36m_{split}.npz'
        np.savez(osp.join(root, out[split]), **arrays)
        if noise_2d:
            out[f'noisy_{split}'] = (f'annotation_body3d/fps{FPS}/'
                                     f'joint2d_noisy_{split}.npy')
            np.save(osp.join(root, out[f'noisy_{split}']), noisy)
    return out
