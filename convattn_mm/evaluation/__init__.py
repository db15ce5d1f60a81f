"""Metrics (registered in :data:`convattn_mm.registry.METRICS`)."""
from .motion_quality import (MotionQualityMetric, foot_skating,
                             ground_penetration, jerk)
from .t2m_evaluator import T2MEvaluator, WordVectorizer
from .text2motion_metric import Text2MotionMetric

__all__ = [
    'MotionQualityMetric', 'foot_skating', 'ground_penetration', 'jerk',
    'T2MEvaluator', 'WordVectorizer', 'Text2MotionMetric'
]
