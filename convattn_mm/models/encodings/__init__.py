"""Relative position encodings: one interface (:class:`RelPosEncoding`)."""
from .base import (RelPosEncoding, check_encoding, encoding_types,
                   interpolate_table)
from .bias_table import RelativeBiasTable
from .log_cpb import LogCPB
from .quadratic import (CONV_INIT_OFFSETS, QuadraticEncoding, alpha_for_mass,
                        conv_centres, conv_init_encoding, grid_centres)
from .relative_keys import RelativeKeys
from .rope import RoPE

__all__ = [
    'RelPosEncoding', 'RelativeBiasTable', 'QuadraticEncoding',
    'RelativeKeys', 'RoPE', 'LogCPB', 'alpha_for_mass', 'grid_centres',
    'interpolate_table', 'check_encoding', 'encoding_types',
    'CONV_INIT_OFFSETS', 'conv_centres', 'conv_init_encoding'
]
