"""Transforms for :class:`.HumanML3DDataset` samples (mmcv style)."""
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import BaseDataElement

from convattn_mm.registry import TRANSFORMS


@TRANSFORMS.register_module()
class SampleCaption(BaseTransform):
    """Pick one of ``captions``: adds ``caption`` (str) and ``tokens``
    (list of ``'word/POS'``).

    Args:
        deterministic (bool): take the first caption instead of a random
            one (numpy's global generator, seeded by mmengine per worker).
    """

    def __init__(self, deterministic=False):
        self.deterministic = deterministic

    def transform(self, results):
        captions = results['captions']
        cap = captions[0] if self.deterministic else captions[
            np.random.randint(len(captions))]
        results['caption'], results['tokens'] = cap['caption'], cap['tokens']
        return results

    def __repr__(self):
        return f'{type(self).__name__}(deterministic={self.deterministic})'


@TRANSFORMS.register_module()
class RandomCropMotion(BaseTransform):
    """Crop ``motion [T, D]`` to at most ``max_length`` frames, then to a
    multiple of ``unit_length``; updates ``length``.

    Args:
        max_length (int): the longest clip kept (196 in the field).
        unit_length (int): lengths become multiples of this (the T2M
            evaluator uses 4). Default 1.
        random (bool): random window start; else the clip's beginning.
        drop_unit_prob (float): probability of cutting one more
            ``unit_length`` when the clip is long enough (the T2M
            evaluation loader does this with probability 1/3). Default 0.
    """

    def __init__(self, max_length=196, unit_length=1, random=True,
                 drop_unit_prob=0.0):
        for name, value in (('max_length', max_length),
                            ('unit_length', unit_length)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'{name}={value!r} must be an int >= 1')
        if max_length < unit_length:
            raise ValueError(f'max_length={max_length} must be >= '
                             f'unit_length={unit_length}')
        if not 0 <= drop_unit_prob <= 1:
            raise ValueError(f'drop_unit_prob={drop_unit_prob!r} must be in '
                             '[0, 1]')
        self.max_length, self.unit_length = max_length, unit_length
        self.random, self.drop_unit_prob = random, drop_unit_prob

    def transform(self, results):
        motion = results['motion']
        length = min(len(motion), self.max_length)
        length -= length % self.unit_length
        if (self.drop_unit_prob and length > self.unit_length
                and np.random.rand() < self.drop_unit_prob):
            length -= self.unit_length
        if length < 1:
            raise ValueError(f'motion {results.get("motion_id")!r} has '
                             f'{len(motion)} frames, fewer than unit_length='
                             f'{self.unit_length}')
        start = np.random.randint(len(motion) - length + 1) \
            if self.random else 0
        results['motion'] = motion[start:start + length]
        results['length'] = length
        return results

    def __repr__(self):
        return (f'{type(self).__name__}(max_length={self.max_length}, '
                f'unit_length={self.unit_length}, random={self.random}, '
                f'drop_unit_prob={self.drop_unit_prob})')


@TRANSFORMS.register_module()
class PackMotionInputs(BaseTransform):
    """``motion`` -> ``inputs`` (float tensor ``[T, D]``); ``meta_keys`` ->
    the metainfo of a ``BaseDataElement`` in ``data_samples``."""

    def __init__(self, meta_keys=('motion_id', 'caption', 'tokens',
                                  'length')):
        self.meta_keys = tuple(meta_keys)

    def transform(self, results):
        missing = [k for k in self.meta_keys if k not in results]
        if missing:
            raise KeyError(f'PackMotionInputs: keys {missing} are not in the '
                           f'sample (has {sorted(results)}); add '
                           'SampleCaption before it for caption/tokens')
        inputs = torch.from_numpy(np.ascontiguousarray(results['motion']))
        sample = BaseDataElement(
            metainfo={k: results[k] for k in self.meta_keys})
        return dict(inputs=inputs.float(), data_samples=sample)

    def __repr__(self):
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'
