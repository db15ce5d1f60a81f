"""HumanML3D / KIT-ML text-to-motion data: formats, joints <-> features,
the dataset and its transforms, and a procedural fixture writer."""
from .dataset import HumanML3DDataset, parse_caption_line
from .features import (canonicalize, features_to_joints, joints_to_features,
                       recover_root)
from .fixture import generate_motion, write_fixture
from .formats import MOTION_FORMATS, MotionFormat, get_motion_format
from .transforms import PackMotionInputs, RandomCropMotion, SampleCaption

__all__ = [
    'HumanML3DDataset', 'parse_caption_line', 'canonicalize',
    'features_to_joints', 'joints_to_features', 'recover_root',
    'generate_motion', 'write_fixture', 'MOTION_FORMATS', 'MotionFormat',
    'get_motion_format', 'PackMotionInputs', 'RandomCropMotion',
    'SampleCaption'
]
