import re

import numpy as np
import pytest

from convattn_mm.datasets import DigitsDataset, digits_split


def test_split_is_fixed_and_disjoint():
    train, test = digits_split('train'), digits_split('test')
    assert len(train) == 1437 and len(test) == 360
    assert not set(train) & set(test)
    assert (test % 5 == 0).all() and (train % 5 != 0).all()
    with pytest.raises(ValueError, match=re.escape(
            "split='val' is not supported; choose one of ['test', 'train']")):
        digits_split('val')


def test_dataset_images_labels_and_pipeline():
    from sklearn.datasets import load_digits
    ds = DigitsDataset('test', img_size=16, pipeline=[dict(type='PackInputs')])
    assert len(ds) == 360 and ds.test_mode
    info = ds.get_data_info(7)
    img = info['img']
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8
    assert (img[..., 0] == img[..., 2]).all()
    digits = load_digits()
    assert info['gt_label'] == digits.target[info['digits_index']]
    # the upscaled image keeps the original's ink distribution
    orig = digits.images[info['digits_index']]
    small = img[..., 0].reshape(8, 2, 8, 2).mean((1, 3))
    assert np.corrcoef(small.ravel(), orig.ravel())[0, 1] > 0.9
    out = ds[0]
    assert tuple(out['inputs'].shape) == (3, 16, 16)
    assert out['data_samples'].gt_label.item() == ds.get_data_info(0)[
        'gt_label']
    assert sorted(set(ds.get_gt_labels().tolist())) == list(range(10))
    assert ds.CLASSES == tuple(str(i) for i in range(10))


def test_bad_arguments():
    with pytest.raises(ValueError, match=re.escape(
            "split='all' is not supported")):
        DigitsDataset('all')
    with pytest.raises(ValueError, match=re.escape(
            'img_size=4 must be an int >= 8')):
        DigitsDataset('train', img_size=4)


def test_builds_from_mmpretrain_config_scope():
    """type='convattn_mm.DigitsDataset' under default_scope='mmpretrain'."""
    from mmengine.registry import DATASETS, init_default_scope
    init_default_scope('mmpretrain')
    ds = DATASETS.build(dict(type='convattn_mm.DigitsDataset', split='train',
                             pipeline=[dict(type='RandomCrop', crop_size=32,
                                            padding=2),
                                       dict(type='PackInputs')]))
    assert isinstance(ds, DigitsDataset) and len(ds) == 1437
    assert tuple(ds[3]['inputs'].shape) == (3, 32, 32)
