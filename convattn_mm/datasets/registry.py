"""Re-export of :data:`convattn_mm.registry.DATASETS` (a child of
mmengine's root ``DATASETS``, scope ``'convattn_mm'``), so
``type='convattn_mm.DigitsDataset'`` resolves from an mmpretrain config."""
from convattn_mm.registry import DATASETS

__all__ = ['DATASETS']
