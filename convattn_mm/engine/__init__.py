"""mmengine hooks (registered in ``convattn_mm.registry.HOOKS``) and optimiser
wrapper constructors."""
from .attention_hook import AttentionStatsHook
from .hooks import RNGStateHook, get_rng_state, set_rng_state
from .optim import (BackboneLayerDecayOptimWrapperConstructor,
                    backbone_layer_depth)

__all__ = [
    'AttentionStatsHook', 'RNGStateHook', 'get_rng_state', 'set_rng_state',
    'BackboneLayerDecayOptimWrapperConstructor', 'backbone_layer_depth'
]
