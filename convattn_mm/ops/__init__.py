"""Functional relative-offset (δ) attention: windows, border rules, kernels."""
from .functional import (
                         AUTO_ORDER,
                         BACKENDS,
                         AttentionPlan,
                         BackendSupport,
                         PositionCarry,
                         attention_bhnd,
                         attention_request,
                         backend_support,
                         check_backend,
                         extra_dims_refusal,
                         na1d,
                         na2d,
                         na3d,
                         neighborhood_attention,
                         plan_attention,
                         select_backend,
                         window_table,
)
from .windows import BORDERS, GLOBAL, WindowSpec, make_window, to_tuple

__all__ = [
    'neighborhood_attention', 'na1d', 'na2d', 'na3d', 'attention_bhnd',
    'window_table', 'make_window', 'WindowSpec', 'to_tuple', 'BORDERS',
    'GLOBAL', 'BACKENDS', 'AUTO_ORDER', 'backend_support', 'select_backend',
    'check_backend', 'PositionCarry', 'AttentionPlan', 'BackendSupport',
    'attention_request', 'plan_attention', 'extra_dims_refusal'
]
