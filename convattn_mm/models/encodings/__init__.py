"""Relative position encodings: one interface (:class:`RelPosEncoding`)."""
from .base import RelPosEncoding, interpolate_table
from .bias_table import RelativeBiasTable
from .log_cpb import LogCPB
from .quadratic import QuadraticEncoding, alpha_for_mass, grid_centres
from .relative_keys import RelativeKeys
from .rope import RoPE

__all__ = [
    'RelPosEncoding', 'RelativeBiasTable', 'QuadraticEncoding',
    'RelativeKeys', 'RoPE', 'LogCPB', 'alpha_for_mass', 'grid_centres',
    'interpolate_table'
]
