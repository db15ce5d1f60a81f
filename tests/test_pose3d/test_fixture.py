"""The H36M-format fixture: the files mmpose's Human36mDataset reads, in
its layout, with held-out subjects; the cameras project as mmpose's own
SimpleCamera does."""
import os.path as osp
import pickle
import re

import numpy as np
import pytest

from convattn_mm.datasets import h36m_fixture as fx
from .lifting import FIXTURE


def load(root, paths, split):
    return dict(np.load(osp.join(root, paths[split])))


def test_files_and_layout(h36m):
    root, paths = h36m
    with open(osp.join(root, paths['cameras']), 'rb') as f:
        cams = pickle.load(f)
    subjects = ('S1', 'S5', 'S6', 'S9', 'S11')
    assert set(cams) == {(s, c[0]) for s in subjects for c in fx.CAMERAS}
    cam = cams[('S9', '54138969')]
    assert cam['R'].shape == (3, 3) and cam['T'].shape == (3, 1)
    assert cam['f'].shape == (2, 1) and cam['c'].shape == (2, 1)
    assert (cam['w'], cam['h']) == (1000, 1002)
    np.testing.assert_allclose(cam['R'].T @ cam['R'], np.eye(3), atol=1e-9)
    per_split = dict(train=3, test=2)
    for split, n_subj in per_split.items():
        d = load(root, paths, split)
        n = n_subj * len(fx.ACTIONS) * FIXTURE['num_cameras'] * \
            FIXTURE['num_frames']
        assert d['S'].shape == (n, 17, 4) and d['part'].shape == (n, 17, 3)
        assert d['center'].shape == (n, 2) and d['scale'].shape == (n, )
        assert (d['S'][..., 3] == 1).all() and (d['part'][..., 2] == 1).all()
        # metres, in front of the camera, a human size, inside the image
        assert d['part'][..., 0].min() > 0 and d['part'][..., 0].max() < 1000
        assert 1.5 < d['S'][..., 2].min() and d['S'][..., 2].max() < 8
        height = np.ptp(d['S'][..., 1], axis=1)
        assert 0.8 < height.min() and height.max() < 2.0
        name = re.compile(r'^(S\d+)/\1_(\w+)\.(\d{8})/\1_\2\.\3_(\d{6})\.jpg$')
        subj = {name.match(s).group(1) for s in d['imgname']}
        actions = {name.match(s).group(2) for s in d['imgname']}
        assert actions == set(fx.ACTIONS)
        assert len(subj) == n_subj
    train = {s.split('/')[0] for s in load(root, paths, 'train')['imgname']}
    test = {s.split('/')[0] for s in load(root, paths, 'test')['imgname']}
    assert not train & test  # held-out subjects
    noisy = np.load(osp.join(root, paths['noisy_test']))
    clean = load(root, paths, 'test')['part']
    err = noisy[..., :2] - clean[..., :2]
    assert abs(err.std() - FIXTURE['noise_2d']) < 0.2


def test_projection_is_mmposes_simple_camera(h36m):
    pytest.importorskip('mmpose', reason='needs mmpose')
    from mmpose.utils.camera import SimpleCamera
    rng = np.random.default_rng(0)
    cams = fx.make_cameras(['S1'], rng)
    world = fx.generate_motion('Walking', 20, rng, fx.REST_BONES)
    for cam in cams.values():
        ref = SimpleCamera(dict(R=cam['R'], T=cam['T'], f=cam['f'],
                                c=cam['c']))
        xyz = fx.world_to_camera(world, cam)
        np.testing.assert_allclose(xyz, ref.world_to_camera(world),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(fx.camera_to_pixel(xyz, cam),
                                   ref.camera_to_pixel(xyz), rtol=1e-4,
                                   atol=1e-3)


def test_bones_keep_their_length():
    rng = np.random.default_rng(1)
    for action in fx.ACTIONS:
        pose = fx.generate_motion(action, 100, rng, fx.REST_BONES)
        for j, p in enumerate(fx.PARENTS):
            if p >= 0:
                length = np.linalg.norm(pose[:, j] - pose[:, p], axis=-1)
                np.testing.assert_allclose(
                    length, np.linalg.norm(fx.REST_BONES[j]), atol=1e-9)
        assert np.ptp(pose, axis=0).max() > 0.1  # it moves


def test_writer_errors(tmp_path):
    with pytest.raises(ValueError, match='overlap'):
        fx.write_h36m_fixture(str(tmp_path), ['S1'], ['S1'])
    with pytest.raises(ValueError, match="actions='Dancing'"):
        fx.write_h36m_fixture(str(tmp_path), actions=['Dancing'])
    with pytest.raises(ValueError, match='num_cameras=5'):
        fx.write_h36m_fixture(str(tmp_path), num_cameras=5)


def test_human36m_dataset_reads_it(h36m):
    pytest.importorskip('mmpose', reason='needs mmpose')
    from mmpose.datasets import Human36mDataset
    root, paths = h36m
    ds = Human36mDataset(
        ann_file=paths['test'], data_root=root, seq_len=27, causal=False,
        pad_video_seq=True, camera_param_file=paths['cameras'],
        data_prefix=dict(img='images/'), test_mode=True)
    n = len(load(root, paths, 'test')['imgname'])
    assert len(ds) == n  # one padded window per frame
    info = ds[100]
    assert info['keypoints'].shape == (27, 17, 2)
    assert info['lifting_target'].shape == (1, 17, 3)
    assert info['camera_param']['w'] == 1000
