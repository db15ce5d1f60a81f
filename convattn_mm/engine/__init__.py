"""mmengine hooks of the package (registered in ``convattn_mm.registry.HOOKS``)."""
from .hooks import RNGStateHook, get_rng_state, set_rng_state

__all__ = ['RNGStateHook', 'get_rng_state', 'set_rng_state']
