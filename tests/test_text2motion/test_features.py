"""Joints <-> HumanML3D features."""
import json
import os.path as osp
import re

import numpy as np
import pytest
import torch

from convattn_mm.datasets.humanml3d import (canonicalize, features_to_joints,
                                            generate_motion,
                                            get_motion_format,
                                            joints_to_features)
from convattn_mm.datasets.humanml3d.features import (foot_contacts,
                                                     joints_from_rotations,
                                                     rotate_y)
from convattn_mm.datasets.humanml3d.formats import rest_offsets, smpl_to_kit


def test_layouts():
    hml, kit = get_motion_format('humanml3d'), get_motion_format('kit')
    assert (hml.num_joints, hml.feature_dim, hml.fps) == (22, 263, 20.0)
    assert (kit.num_joints, kit.feature_dim, kit.fps) == (21, 251, 12.5)
    sl = hml.slices
    assert (sl['ric_positions'], sl['rotations_6d'], sl['local_velocity'],
            sl['foot_contacts']) == (slice(4, 67), slice(67, 193),
                                     slice(193, 259), slice(259, 263))
    assert hml.parents[:4] == (-1, 0, 0, 0) and hml.parents[21] == 19
    with pytest.raises(ValueError, match=re.escape(
            "motion_format='smpl' is not supported; choose one of "
            "['humanml3d', 'kit']")):
        get_motion_format('smpl')


def test_kit_joints_follow_their_names():
    """The fixture's KIT-ML joints sit on the side their names say (the
    skeleton faces +z, its left on +x)."""
    from convattn_mm.datasets.humanml3d.formats import smpl_rest_joints
    kit = smpl_to_kit(smpl_rest_joints())
    names = get_motion_format('kit').joint_names
    for name, (x, _, _) in zip(names, kit):
        if name.startswith('left_'):
            assert x > 0, name
        elif name.startswith('right_'):
            assert x < 0, name
    lengths = np.linalg.norm(rest_offsets('kit'), axis=-1)
    assert (lengths[1:] > 0).all()


@pytest.mark.parametrize('fmt', ['humanml3d', 'kit'])
def test_round_trip_of_fixture_files(fmt, humanml3d_root, kit_root):
    """The stored (float32) features decode to the generator's joints
    within 1e-4 m."""
    root = humanml3d_root if fmt == 'humanml3d' else kit_root
    spec = get_motion_format(fmt)
    with open(osp.join(root, 'fixture_labels.json')) as f:
        scripts = json.load(f)
    worst = 0.0
    for mid, script in scripts.items():
        joints = generate_motion(script, spec.fps)
        if fmt == 'kit':
            joints = smpl_to_kit(joints)
        joints = canonicalize(joints / spec.unit_m, fmt)
        feats = np.load(osp.join(root, 'new_joint_vecs', mid + '.npy'))
        assert feats.dtype == np.float32
        assert feats.shape == (len(joints) - 1, spec.feature_dim)
        decoded = features_to_joints(feats.astype(np.float64), fmt)
        worst = max(worst, np.abs(decoded - joints[:-1]).max() * spec.unit_m)
    assert worst < 1e-4


def test_canonical_frame_and_invariance():
    """Features do not depend on where the clip starts or which way it
    faces; the canonical clip stands on the floor facing +z."""
    joints = generate_motion([dict(action='walk', direction='circle',
                                   duration=3.0)])
    moved = rotate_y(torch.from_numpy(joints), torch.tensor(2.1)).numpy()
    moved += np.array([3.0, 0.4, -7.0])
    a = joints_to_features(joints)
    b = joints_to_features(moved)
    np.testing.assert_allclose(a, b, atol=1e-7)
    canon = canonicalize(moved, 'humanml3d')
    assert abs(canon[..., 1].min()) < 1e-12
    np.testing.assert_allclose(canon[0, 0, [0, 2]], 0, atol=1e-12)
    l_hip, r_hip = canon[0, 1], canon[0, 2]
    assert l_hip[0] > r_hip[0]        # facing +z: the left hip on +x
    np.testing.assert_allclose(canon, joints, atol=1e-9)


def test_full_turns_round_trip():
    """Headings that cross ±180° (two full circles) decode exactly."""
    joints = generate_motion([dict(action='run', direction='circle',
                                   duration=1.5)] * 1)
    # spin the clip twice about the root while it runs
    spin = torch.linspace(0, 4 * np.pi, len(joints), dtype=torch.float64)
    root = torch.from_numpy(joints[:, :1])
    body = rotate_y(torch.from_numpy(joints) - root, spin[:, None]) + root
    body = body.numpy()
    feats = joints_to_features(body)
    np.testing.assert_allclose(features_to_joints(feats),
                               canonicalize(body, 'humanml3d')[:-1],
                               atol=1e-9)
    assert np.abs(feats[:, 0]).max() < np.pi / 2


def test_rotations_rebuild_the_positions():
    """Forward kinematics of the 6-D rotations with the skeleton's bone
    lengths gives the joints back."""
    for fmt, scale in (('humanml3d', 1.0), ('kit', 1000.0)):
        joints = generate_motion([dict(action='kick', side='left',
                                       duration=2.0)],
                                 get_motion_format(fmt).fps)
        if fmt == 'kit':
            joints = smpl_to_kit(joints)
        joints = joints * scale
        feats = joints_to_features(joints, fmt)
        lengths = np.linalg.norm(rest_offsets(fmt), axis=-1)
        rebuilt = joints_from_rotations(feats, lengths, fmt)
        np.testing.assert_allclose(rebuilt, canonicalize(joints, fmt)[:-1],
                                   atol=1e-6 * scale)


def test_foot_contacts_known_answer():
    """A static foot is in contact, a foot moving 0.1 m per frame is not."""
    joints = np.zeros((5, 22, 3))
    joints[:, 10, 2] = 0.1 * np.arange(5)         # left toe slides
    contacts = foot_contacts(joints, 'humanml3d')
    assert contacts.shape == (4, 4)
    np.testing.assert_array_equal(contacts[:, 1], 0)
    np.testing.assert_array_equal(contacts[:, [0, 2, 3]], 1)


def test_tensor_batch_decoding_matches_numpy():
    joints = generate_motion([dict(action='walk', duration=2.0)])
    feats = joints_to_features(joints)
    batch = torch.from_numpy(np.stack([feats, feats[::-1].copy()]))
    out = features_to_joints(batch)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 39, 22, 3)
    np.testing.assert_allclose(out[0].numpy(), features_to_joints(feats))


def test_bad_shapes():
    with pytest.raises(ValueError, match=re.escape(
            "joints of shape (10, 21, 3) do not fit motion_format="
            "'humanml3d': expected [T, 22, 3]")):
        joints_to_features(np.zeros((10, 21, 3)))
    with pytest.raises(ValueError, match='at least 2'):
        joints_to_features(np.zeros((1, 22, 3)))
    with pytest.raises(ValueError, match=re.escape(
            "features have 263 entries per frame; motion_format='kit' has "
            '251')):
        features_to_joints(np.zeros((4, 263)), 'kit')
