"""Attention layers on the relative-offset axis."""
from .rel_pos_attention import AttentionRecorder, RelPosAttention
from .conv_attention import ConvAttention, GatedConvAttention  # noqa: E402
from .converted import ConvToAttention  # noqa: E402
from .mlp import Mlp  # noqa: E402

__all__ = ['RelPosAttention', 'AttentionRecorder']
__all__ += ['ConvAttention', 'GatedConvAttention', 'ConvToAttention', 'Mlp']
