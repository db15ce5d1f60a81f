"""Seeing what attention learned: capture each head's attention and measure
how convolution-like it is (see ``docs/analysis.md``)."""
from .capture import (AttentionCapture, LayerRecord, attention_layers,
                      capture_attention, layer_stride, pixel_to_grid,
                      select_layers)
from .measures import (MEASURES, content_dependence, conv_distance,
                       effective_kernel, head_measures,
                       mean_attention_distance, mean_kernel,
                       measures_to_rows, scalar_dict)

__all__ = [
    'capture_attention', 'AttentionCapture', 'LayerRecord',
    'attention_layers', 'select_layers', 'pixel_to_grid', 'layer_stride',
    'head_measures', 'mean_attention_distance', 'mean_kernel',
    'effective_kernel', 'content_dependence', 'conv_distance',
    'measures_to_rows', 'scalar_dict', 'MEASURES'
]
