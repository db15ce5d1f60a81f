"""Attention layers on the relative-offset axis, the blocks they make, MLP."""
from .rel_pos_attention import AttentionRecorder, RelPosAttention
from .conv_attention import ConvAttention, GatedConvAttention  # noqa: E402
from .mlp import Mlp  # noqa: E402
from .blocks import RelPosAttnBlock  # noqa: E402

__all__ = [
    'RelPosAttention', 'AttentionRecorder', 'ConvAttention',
    'GatedConvAttention', 'Mlp', 'RelPosAttnBlock'
]
