"""HumanML3DDataset, its transforms and the fixture writer."""
import os
import os.path as osp
import re
import shutil

import numpy as np
import pytest
import torch

from convattn_mm.datasets.humanml3d import (HumanML3DDataset,
                                            RandomCropMotion, SampleCaption,
                                            parse_caption_line, write_fixture)

PIPELINE = [dict(type='convattn_mm.SampleCaption'),
            dict(type='convattn_mm.RandomCropMotion', max_length=64,
                 unit_length=4),
            dict(type='convattn_mm.PackMotionInputs')]


def _captions(root, mid):
    with open(osp.join(root, 'texts', mid + '.txt')) as f:
        return [parse_caption_line(line) for line in f if line.strip()]


def test_fixture_layout(humanml3d_root):
    root = humanml3d_root
    for name in ('Mean.npy', 'Std.npy', 'train.txt', 'val.txt', 'test.txt',
                 'all.txt'):
        assert osp.isfile(osp.join(root, name))
    ids = open(osp.join(root, 'all.txt')).read().split()
    assert len(ids) == 24 and len(os.listdir(
        osp.join(root, 'new_joint_vecs'))) == 24
    splits = [open(osp.join(root, f'{s}.txt')).read().split()
              for s in ('train', 'val', 'test')]
    assert sorted(sum(splits, [])) == sorted(ids)
    words, segments = set(), 0
    for mid in ids:
        caps = _captions(root, mid)
        assert sum(c['start'] == c['end'] == 0 for c in caps) == 3
        segments += sum(c['end'] > 0 for c in caps)
        for c in caps:
            words.update(t.split('/')[0] for t in c['tokens'])
            assert all(re.fullmatch(r'[a-z]+/[A-Z]+', t) for t in c['tokens'])
    assert segments > 0
    for w in ('walk', 'run', 'jump', 'wave', 'kick', 'sit', 'left', 'right',
              'slowly', 'quickly'):
        assert w in words, w
    feats = np.load(osp.join(root, 'new_joint_vecs', ids[0] + '.npy'))
    joints = np.load(osp.join(root, 'new_joints', ids[0] + '.npy'))
    assert feats.shape[1] == 263 and joints.shape == (len(feats), 22, 3)


def test_fixture_is_reproducible(tmp_path):
    write_fixture(str(tmp_path / 'a'), num_motions=3, seed=5)
    write_fixture(str(tmp_path / 'b'), num_motions=3, seed=5)
    for name in ('texts/000002.txt', 'new_joint_vecs/000002.npy', 'Std.npy'):
        with open(tmp_path / 'a' / name, 'rb') as fa, \
                open(tmp_path / 'b' / name, 'rb') as fb:
            assert fa.read() == fb.read()
    with pytest.raises(ValueError, match=re.escape(
            'num_motions=2 must be an int >= 3')):
        write_fixture(str(tmp_path / 'c'), num_motions=2)


def test_samples_segments_and_normalisation(humanml3d_root):
    root = humanml3d_root
    ds = HumanML3DDataset(root, split='all')
    mean, std = np.load(osp.join(root, 'Mean.npy')), np.load(
        osp.join(root, 'Std.npy'))
    expected = 0
    for mid in open(osp.join(root, 'all.txt')).read().split():
        n = len(np.load(osp.join(root, 'new_joint_vecs', mid + '.npy')))
        spans = {(c['start'], c['end']) for c in _captions(root, mid)}
        for start, end in spans:
            length = n if start == end == 0 else (
                int(end * 20) - int(start * 20))
            expected += 40 <= length <= 199
    assert len(ds) == expected
    seg = next(d for d in (ds.get_data_info(i) for i in range(len(ds)))
               if '#' in d['motion_id'])
    mid, span = seg['motion_id'].split('#')
    start, end = map(float, span.split('-'))
    raw = np.load(osp.join(root, 'new_joint_vecs', mid + '.npy'))
    np.testing.assert_allclose(ds.denormalize(seg['motion']),
                               raw[int(start * 20):int(end * 20)],
                               rtol=1e-5, atol=1e-5)
    assert all(c['start'] == start for c in seg['captions'])
    np.testing.assert_array_equal(ds.metainfo['mean'], mean)
    np.testing.assert_array_equal(ds.metainfo['std'], std)
    assert ds.metainfo['motion_format'] == 'humanml3d'
    assert ds.metainfo['fps'] == 20.0
    # the length filter
    short = HumanML3DDataset(root, split='all', min_length=90,
                             max_length=110)
    assert 0 < len(short) < len(ds)
    assert all(90 <= short.get_data_info(i)['length'] <= 110
               for i in range(len(short)))


def test_metainfo_survives_a_safe_checkpoint(humanml3d_root, tmp_path):
    """mmengine's Runner saves the dataset's metainfo in every checkpoint;
    it must load with weights_only=True."""
    ds = HumanML3DDataset(humanml3d_root, split='val')
    torch.save(dict(meta=dict(dataset_meta=ds.metainfo)),
               str(tmp_path / 'ckpt.pth'))
    meta = torch.load(str(tmp_path / 'ckpt.pth'),
                      weights_only=True)['meta']['dataset_meta']
    np.testing.assert_array_equal(meta['std'], ds.metainfo['std'])
    assert meta['motion_format'] == 'humanml3d'


def test_pipeline_and_transforms(humanml3d_root):
    ds = HumanML3DDataset(humanml3d_root, split='train', pipeline=PIPELINE)
    assert not ds.test_mode
    out = ds[0]
    assert out['inputs'].dtype == torch.float32
    length = out['data_samples'].length
    assert out['inputs'].shape == (length, 263)
    assert length <= 64 and length % 4 == 0
    assert out['data_samples'].caption in [
        c['caption'] for c in ds.get_data_info(0)['captions']]
    info = dict(motion=np.arange(10)[:, None], captions=[
        dict(caption='a', tokens=['a/DET']), dict(caption='b', tokens=[])])
    crop = RandomCropMotion(max_length=7, unit_length=3, random=False)
    res = crop(dict(info))
    assert res['length'] == 6 and res['motion'][:, 0].tolist() == list(
        range(6))
    starts = {int(RandomCropMotion(4)(dict(info))['motion'][0, 0])
              for _ in range(60)}
    assert starts == set(range(7))
    lengths = [RandomCropMotion(8, 4, drop_unit_prob=0.5)(dict(info))[
        'length'] for _ in range(200)]
    assert set(lengths) == {4, 8} and 60 < lengths.count(4) < 140
    assert SampleCaption(deterministic=True)(dict(info))['caption'] == 'a'
    with pytest.raises(ValueError, match=re.escape(
            'unit_length=0 must be an int >= 1')):
        RandomCropMotion(unit_length=0)


def test_builds_from_another_scope(humanml3d_root):
    from mmengine.registry import DATASETS, init_default_scope
    init_default_scope('mmpretrain')
    ds = DATASETS.build(dict(
        type='convattn_mm.HumanML3DDataset', data_root=humanml3d_root,
        split='val', pipeline=PIPELINE))
    assert isinstance(ds, HumanML3DDataset) and ds.test_mode
    assert ds[0]['inputs'].shape[1] == 263


def test_kit_variant(kit_root):
    ds = HumanML3DDataset(kit_root, split='all', motion_format='kit')
    assert len(ds) > 0 and ds.get_data_info(0)['motion'].shape[1] == 251
    assert all(d['length'] >= 24 for d in (ds.get_data_info(i)
                                           for i in range(len(ds))))
    with pytest.raises(ValueError, match=re.escape(
            "has shape (251,); motion_format='humanml3d' needs (263,)")):
        HumanML3DDataset(kit_root, split='all')


def test_error_messages(humanml3d_root, tmp_path):
    root = str(tmp_path / 'data')
    shutil.copytree(humanml3d_root, root)
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"split='dev': {root}/dev.txt does not exist")):
        HumanML3DDataset(root, split='dev')
    with open(osp.join(root, 'texts', '000001.txt'), 'a') as f:
        f.write('a person walks#a/DET person/NOUN walk/VERB#0.0\n')
    n_lines = len(open(osp.join(root, 'texts', '000001.txt')).readlines())
    with pytest.raises(ValueError, match=re.escape(
            f'{root}/texts/000001.txt:{n_lines}: expected '
            '"caption#tokens#start#end"')):
        HumanML3DDataset(root, split='all')
    with pytest.raises(ValueError, match='segment 3.0..1.0 s is not an'):
        parse_caption_line('x#x/NOUN#3.0#1.0')
    assert parse_caption_line('x#x/NOUN#nan#nan')['start'] == 0.0
    os.remove(osp.join(root, 'new_joint_vecs', '000000.npy'))
    with pytest.raises(FileNotFoundError, match=re.escape(
            f'motion file {root}/new_joint_vecs/000000.npy (listed in '
            f'{root}/train.txt) does not exist')):
        HumanML3DDataset(root, split='train')
    os.remove(osp.join(root, 'Std.npy'))
    with pytest.raises(FileNotFoundError, match=re.escape(
            f'std_file: {root}/Std.npy does not exist')):
        HumanML3DDataset(root, split='train')


def test_cli_writes_a_dataset(tmp_path):
    import importlib.util
    path = osp.join(osp.dirname(__file__), '..', '..', 'tools',
                    'make_motion_fixture.py')
    spec = importlib.util.spec_from_file_location('make_motion_fixture', path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main([str(tmp_path / 'kit'), '--num-motions', '4', '--format',
               'kit'])
    ds = HumanML3DDataset(str(tmp_path / 'kit'), split='all',
                          motion_format='kit')
    assert ds.get_data_info(0)['motion'].shape[1] == 251
