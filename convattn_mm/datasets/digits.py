"""scikit-learn's handwritten digits as an mmpretrain dataset.

1,797 grey 8×8 images (values 0..16) of the digits 0-9, shipped inside the
scikit-learn wheel: no download. **Split** (fixed, documented): sample ``i``
of ``sklearn.datasets.load_digits()`` is a test sample iff ``i % 5 == 0``
(360 test, 1,437 train; the file's order mixes writers, so both halves hold
every writer and class). **Images**: scaled to 0..255, resized bilinearly to
``img_size × img_size`` and repeated to 3 channels: ``img`` is ``[S, S, 3]``
uint8 in each data info, so no ``LoadImageFromFile`` is needed; the rest of
the usual mmpretrain pipeline (``RandomCrop``, ``PackInputs``, ...) applies.
"""
import numpy as np
from mmpretrain.datasets import BaseDataset

from convattn_mm.utils import check_choice

from .registry import DATASETS

SPLITS = ('test', 'train')
TEST_EVERY = 5


def digits_split(split):
    """Indices into ``load_digits()`` of ``split`` (``'train'``/``'test'``)."""
    check_choice(split, SPLITS, 'split')
    idx = np.arange(1797)
    test = idx % TEST_EVERY == 0
    return idx[test] if split == 'test' else idx[~test]


def upscale(images, size):
    """``[N, 8, 8]`` floats in 0..16 -> ``[N, size, size, 3]`` uint8."""
    import torch
    x = torch.as_tensor(images, dtype=torch.float32)[:, None] * (255 / 16)
    if size != x.shape[-1]:
        x = torch.nn.functional.interpolate(x, size=(size, size),
                                            mode='bilinear',
                                            align_corners=False)
    x = x.clamp(0, 255).round().to(torch.uint8)[:, 0]
    return x[..., None].expand(-1, -1, -1, 3).contiguous().numpy()


@DATASETS.register_module()
class DigitsDataset(BaseDataset):
    """Handwritten digits (see the module docstring for split and images).

    Args:
        split (str): ``'train'`` (1,437 images) or ``'test'`` (360).
        img_size (int): output side in pixels (>= 8). Default 32.
        pipeline, test_mode, ...: as :class:`mmpretrain.datasets.BaseDataset`
            (``test_mode`` defaults to ``split == 'test'``).

    Example:
        >>> ds = DigitsDataset('test', pipeline=[dict(type='PackInputs')])
        >>> len(ds), ds[0]['inputs'].shape
        (360, torch.Size([3, 32, 32]))
    """
    METAINFO = {'classes': tuple(str(i) for i in range(10))}

    def __init__(self, split='train', img_size=32, pipeline=(),
                 test_mode=None, **kwargs):
        check_choice(split, SPLITS, 'split')
        if not isinstance(img_size, int) or img_size < 8:
            raise ValueError(f'img_size={img_size!r} must be an int >= 8')
        self.split, self.img_size = split, img_size
        if test_mode is None:
            test_mode = split == 'test'
        super().__init__(ann_file='', pipeline=pipeline, test_mode=test_mode,
                         **kwargs)

    def load_data_list(self):
        from sklearn.datasets import load_digits
        digits = load_digits()
        idx = digits_split(self.split)
        images = upscale(digits.images[idx], self.img_size)
        shape = (self.img_size, self.img_size)
        return [
            dict(img=img, gt_label=int(label), img_shape=shape,
                 ori_shape=shape, digits_index=int(i))
            for img, label, i in zip(images, digits.target[idx], idx)
        ]

    def extra_repr(self):
        return [f'Split: \t{self.split}', f'Image size: \t{self.img_size}']
