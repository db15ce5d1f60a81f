"""Datasets (registered in :data:`convattn_mm.datasets.registry.DATASETS`)."""
from .digits import DigitsDataset, digits_split
from .humanml3d import (HumanML3DDataset, PackMotionInputs, RandomCropMotion,
                        SampleCaption)
from .registry import DATASETS

__all__ = [
    'DATASETS', 'DigitsDataset', 'digits_split', 'HumanML3DDataset',
    'PackMotionInputs', 'RandomCropMotion', 'SampleCaption'
]
