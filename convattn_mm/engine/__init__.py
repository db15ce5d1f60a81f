"""mmengine hooks (registered in ``convattn_mm.registry.HOOKS``)."""
from .attention_hook import AttentionStatsHook
from .hooks import RNGStateHook, get_rng_state, set_rng_state

__all__ = ['AttentionStatsHook', 'RNGStateHook', 'get_rng_state',
           'set_rng_state']
