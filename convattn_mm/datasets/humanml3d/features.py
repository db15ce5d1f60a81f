"""Joints <-> HumanML3D features (layout in :mod:`.formats`).

Written from the published description of the format. Conventions:

* y is up; a rotation about y by ``a`` maps ``(x, z)`` to
  ``(x cos a + z sin a, -x sin a + z cos a)`` (:func:`rotate_y`), so the
  forward direction ``(sin h, 0, cos h)`` has heading ``h`` and
  ``rotate_y(., -h)`` turns it to +z (the "root-facing frame").
* The stored root rotation velocity is half the heading change (the format
  stores the y component of a unit quaternion through ``arcsin``); the
  decoder sums it into ``theta_t`` and uses ``rotate_y(., -2 theta_t)``.

:func:`joints_to_features` first puts the motion on the floor (lowest joint
over the clip at y = 0), moves the root of frame 0 to x = z = 0 and turns
the clip so that frame 0 faces +z, as the data set's script does.
Differences from that script, all documented choices:

* no retargeting to a reference skeleton (the fixture has one skeleton);
* the heading is not smoothed over time, and the half-angle is wrapped into
  ``(-pi/2, pi/2]``, so that :func:`features_to_joints` inverts the position
  features exactly (the round trip is tested to 1e-4 m);
* the 6-D rotations are minimal-twist rotations of each bone from the rest
  directions of :func:`.formats.rest_offsets`, chained along each kinematic
  chain from the root's facing rotation. They are consistent with the
  positions (:func:`joints_from_rotations` rebuilds them) but are not the
  numbers in the released HumanML3D files, which were made from that
  project's own rest directions. Nothing in the decoder reads them.
"""
import functools

import numpy as np
import torch

from .formats import get_motion_format, rest_offsets


def _accepts_numpy(fn):
    """Let ``fn`` (written for tensors) take and return numpy arrays."""
    @functools.wraps(fn)
    def wrapper(x, *args, **kwargs):
        if isinstance(x, np.ndarray):
            out = fn(torch.from_numpy(x), *args, **kwargs)
            if isinstance(out, tuple):
                return tuple(o.numpy() for o in out)
            return out.numpy()
        return fn(x, *args, **kwargs)
    return wrapper


def rotate_y(vectors, angle):
    """Rotate ``vectors [..., 3]`` about y by ``angle`` (broadcast over
    ``[...]``): ``x' = x cos a + z sin a``, ``z' = -x sin a + z cos a``."""
    c, s = torch.cos(angle), torch.sin(angle)
    x, y, z = vectors.unbind(-1)
    return torch.stack([x * c + z * s, y, -x * s + z * c], dim=-1)


def wrap_angle(angle):
    """Angle into ``(-pi, pi]``."""
    return -torch.remainder(-angle + np.pi, 2 * np.pi) + np.pi


def headings(joints, motion_format):
    """Heading ``h [..., T]`` of ``joints [..., T, J, 3]``: the forward
    direction ``up × across`` (``across`` from :attr:`face_joints`) is
    ``(sin h, 0, cos h)``."""
    fmt = get_motion_format(motion_format)
    a, b, c, d = fmt.face_joints
    across = (joints[..., a, :] - joints[..., b, :]
              + joints[..., c, :] - joints[..., d, :])
    # up × across = (across_z, 0, -across_x)
    return torch.atan2(across[..., 2], -across[..., 0])


@_accepts_numpy
def canonicalize(joints, motion_format):
    """``[T, J, 3]`` -> the same motion on the floor (min y = 0), root of
    frame 0 at x = z = 0, frame 0 facing +z."""
    joints = joints.clone()
    joints[..., 1] -= joints[..., 1].amin()
    root0 = joints[0, 0].clone()
    root0[1] = 0
    joints = joints - root0
    return rotate_y(joints, -headings(joints[0], motion_format))


@_accepts_numpy
def foot_contacts(joints, motion_format):
    """``[T, J, 3]`` -> ``[T - 1, 4]`` (the format's ``contact_joints``):
    1 where the joint's squared displacement to the next frame is below the
    format's ``contact_threshold``."""
    fmt = get_motion_format(motion_format)
    feet = list(fmt.contact_joints)
    step = joints[1:, feet] - joints[:-1, feet]
    return (step.pow(2).sum(-1) < fmt.contact_threshold).to(joints.dtype)


def _minimal_rotation(u, v):
    """Rotation matrices ``[..., 3, 3]`` turning unit ``u`` to unit ``v``
    about ``u × v`` (Rodrigues); for opposite vectors, a half turn about an
    axis perpendicular to ``u``."""
    k = torch.cross(u, v, dim=-1)
    c = (u * v).sum(-1)
    eye = torch.eye(3, dtype=u.dtype, device=u.device).expand(
        *u.shape[:-1], 3, 3)
    zero = torch.zeros_like(c)
    kx = torch.stack([
        torch.stack([zero, -k[..., 2], k[..., 1]], -1),
        torch.stack([k[..., 2], zero, -k[..., 0]], -1),
        torch.stack([-k[..., 1], k[..., 0], zero], -1)], -2)
    opposite = c < -1 + 1e-9
    scale = 1 / torch.where(opposite, torch.ones_like(c), 1 + c)
    rot = eye + kx + kx @ kx * scale[..., None, None]
    if opposite.any():
        # half turn about a unit axis n perpendicular to u: 2 n nᵀ - I
        helper = torch.zeros_like(u)
        helper[..., 0] = 1
        helper[(u[..., 0].abs() > 0.9)] = torch.tensor(
            [0.0, 1.0, 0.0], dtype=u.dtype, device=u.device)
        n = torch.nn.functional.normalize(torch.cross(u, helper, dim=-1),
                                          dim=-1)
        half = 2 * n[..., :, None] * n[..., None, :] - eye
        rot = torch.where(opposite[..., None, None], half, rot)
    return rot


def _matrix_y(angle):
    """Matrices ``[..., 3, 3]`` of :func:`rotate_y` (column vectors)."""
    c, s = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    return torch.stack([torch.stack([c, zero, s], -1),
                        torch.stack([zero, one, zero], -1),
                        torch.stack([-s, zero, c], -1)], -2)


def _rest_directions(fmt, like):
    offsets = torch.as_tensor(rest_offsets(fmt), dtype=like.dtype,
                              device=like.device)
    return torch.nn.functional.normalize(offsets, dim=-1)


@_accepts_numpy
def local_rotations(joints, motion_format):
    """``[T, J, 3]`` -> local rotation matrices ``[T, J, 3, 3]`` (identity
    at the root): for each bone ``p -> j`` along each chain,
    ``R_j = minimal_rotation(rest_dir_j, G_pᵀ (P_j - P_p)/|.|)`` and
    ``G_j = G_p R_j``, starting every chain from the root's facing rotation
    ``G = rotate_y(., h_t)`` (as the data set does)."""
    fmt = get_motion_format(motion_format)
    rest = _rest_directions(fmt, joints)
    facing = _matrix_y(headings(joints, fmt))
    local = torch.eye(3, dtype=joints.dtype, device=joints.device).repeat(
        *joints.shape[:-2], fmt.num_joints, 1, 1)
    for chain in fmt.chains:
        glob = facing
        for parent, child in zip(chain[:-1], chain[1:]):
            bone = torch.nn.functional.normalize(
                joints[..., child, :] - joints[..., parent, :], dim=-1)
            bone_local = (glob.transpose(-1, -2) @ bone[..., None])[..., 0]
            rot = _minimal_rotation(rest[child].expand_as(bone_local),
                                    bone_local)
            local[..., child, :, :] = rot
            glob = glob @ rot
    return local


def matrix_to_6d(rot):
    """``[..., 3, 3]`` -> ``[..., 6]``: the first two columns."""
    return torch.cat([rot[..., :, 0], rot[..., :, 1]], dim=-1)


def matrix_from_6d(d6):
    """``[..., 6]`` -> ``[..., 3, 3]`` by Gram-Schmidt (Zhou et al. 2019)."""
    a = torch.nn.functional.normalize(d6[..., :3], dim=-1)
    b = d6[..., 3:] - (a * d6[..., 3:]).sum(-1, keepdim=True) * a
    b = torch.nn.functional.normalize(b, dim=-1)
    return torch.stack([a, b, torch.cross(a, b, dim=-1)], dim=-1)


@_accepts_numpy
def joints_to_features(joints, motion_format='humanml3d', canonical=False):
    """Joint positions ``[T, J, 3]`` (T >= 2, the format's unit) ->
    features ``[T - 1, 12 J - 1]``.

    Args:
        joints: positions, y up.
        motion_format (str | MotionFormat): ``'humanml3d'`` or ``'kit'``.
        canonical (bool): the joints are already on the floor, at the origin
            and facing +z (skip :func:`canonicalize`).
    """
    fmt = get_motion_format(motion_format)
    if joints.ndim != 3 or joints.shape[1:] != (fmt.num_joints, 3):
        raise ValueError(f'joints of shape {tuple(joints.shape)} do not fit '
                         f'motion_format={fmt.name!r}: expected '
                         f'[T, {fmt.num_joints}, 3]')
    if joints.shape[0] < 2:
        raise ValueError(f'joints has {joints.shape[0]} frame(s); the '
                         'features need at least 2 (velocities)')
    if not canonical:
        joints = canonicalize(joints, fmt)
    heading = headings(joints, fmt)                           # [T]
    root = joints[:, 0]
    turn = wrap_angle(-(heading[1:] - heading[:-1])) / 2      # [T-1]
    root_step = rotate_y(root[1:] - root[:-1], -heading[1:])
    ground = joints - torch.stack(
        [root[:, 0], torch.zeros_like(root[:, 0]), root[:, 2]], -1)[:, None]
    ric = rotate_y(ground[:, 1:], -heading[:, None])
    rot6d = matrix_to_6d(local_rotations(joints, fmt)[:, 1:])
    local_vel = rotate_y(joints[1:] - joints[:-1], -heading[:-1, None])
    n = joints.shape[0] - 1
    return torch.cat([
        turn[:, None], root_step[:, [0, 2]], root[:-1, 1:2],
        ric[:-1].reshape(n, -1), rot6d[:-1].reshape(n, -1),
        local_vel.reshape(n, -1), foot_contacts(joints, fmt)], dim=-1)


def _check_features(features, fmt):
    if features.shape[-1] != fmt.feature_dim:
        raise ValueError(f'features have {features.shape[-1]} entries per '
                         f'frame; motion_format={fmt.name!r} has '
                         f'{fmt.feature_dim}')


@_accepts_numpy
def recover_root(features, motion_format='humanml3d'):
    """Features ``[..., T, D]`` -> (``theta [..., T]``, root positions
    ``[..., T, 3]``): ``theta_t = sum_{i<t} f_i[0]``; the root's xz is the
    running sum of ``rotate_y(step_{t-1}, -2 theta_t)``, its y is stored."""
    fmt = get_motion_format(motion_format)
    _check_features(features, fmt)
    sl = fmt.slices
    turn = features[..., sl['root_rot_velocity']][..., 0]
    theta = torch.cumsum(torch.cat([torch.zeros_like(turn[..., :1]),
                                    turn[..., :-1]], -1), -1)
    step = features[..., sl['root_linear_velocity']]
    step = torch.stack([step[..., 0], torch.zeros_like(step[..., 0]),
                        step[..., 1]], -1)
    step = torch.cat([torch.zeros_like(step[..., :1, :]), step[..., :-1, :]],
                     -2)
    root = torch.cumsum(rotate_y(step, -2 * theta), -2)
    root[..., 1] = features[..., sl['root_height']][..., 0]
    return theta, root


@_accepts_numpy
def features_to_joints(features, motion_format='humanml3d'):
    """Features ``[..., T, D]`` -> joints ``[..., T, J, 3]`` from the root
    and the ``ric`` positions (HumanML3D's ``recover_from_ric``):
    ``P_t = rotate_y(ric_t, -2 theta_t) + (root_t.x, 0, root_t.z)``."""
    fmt = get_motion_format(motion_format)
    theta, root = recover_root(features, fmt)
    ric = features[..., fmt.slices['ric_positions']]
    ric = ric.reshape(*ric.shape[:-1], fmt.num_joints - 1, 3)
    body = rotate_y(ric, -2 * theta[..., None])
    body[..., 0] += root[..., None, 0]
    body[..., 2] += root[..., None, 2]
    return torch.cat([root[..., None, :], body], dim=-2)


@_accepts_numpy
def joints_from_rotations(features, bone_lengths, motion_format='humanml3d'):
    """Features ``[..., T, D]`` and ``bone_lengths [J]`` -> joints
    ``[..., T, J, 3]`` by forward kinematics of the 6-D rotations from the
    recovered root: ``P_j = P_p + G_p R_j rest_dir_j |bone_j|``, chains
    starting from the root's facing rotation ``rotate_y(., -2 theta)``."""
    fmt = get_motion_format(motion_format)
    theta, root = recover_root(features, fmt)
    rot = features[..., fmt.slices['rotations_6d']]
    rot = matrix_from_6d(rot.reshape(*rot.shape[:-1], fmt.num_joints - 1, 6))
    rest = _rest_directions(fmt, features)
    lengths = torch.as_tensor(bone_lengths, dtype=features.dtype)
    facing = _matrix_y(-2 * theta)
    joints = [None] * fmt.num_joints
    joints[0] = root
    for chain in fmt.chains:
        glob = facing
        for parent, child in zip(chain[:-1], chain[1:]):
            glob = glob @ rot[..., child - 1, :, :]
            joints[child] = joints[parent] + (
                glob @ rest[child, :, None])[..., 0] * lengths[child]
    return torch.stack(joints, dim=-2)
