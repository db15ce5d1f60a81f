"""Fixes for the pinned stack, each subject in one module:

* :mod:`.checkpoints`: checkpoints that load under ``weights_only=True``
  (allow-list, plain message-hub buffers, trusted loading);
* :mod:`.distributed`: ``--launcher pytorch`` on machines without a GPU.

:func:`apply` installs both. It is idempotent and changes nothing for code
that does not use those paths; importing :mod:`convattn_mm.registry` calls
it, so every entry point that builds a ``convattn_mm.`` type has it (see
``docs/reliability.md``).
"""
from . import checkpoints, distributed
from .checkpoints import (TRUST_ENV, is_plain_history_buffer,
                          load_trusted_checkpoint, map_containers,
                          plain_history_buffers, read_weights_only,
                          restore_history_buffers, safe_globals,
                          trusted_by_env, trusted_checkpoints,
                          upgrade_checkpoint)


def apply():
    """Install every fix (idempotent, thread-safe). Returns True."""
    checkpoints.apply()
    distributed.apply()
    return True


def is_applied():
    """True once :func:`apply` has run."""
    return checkpoints.is_applied() and distributed.is_applied()


__all__ = [
    'apply', 'is_applied', 'checkpoints', 'distributed', 'TRUST_ENV',
    'safe_globals', 'read_weights_only', 'map_containers',
    'plain_history_buffers', 'restore_history_buffers',
    'is_plain_history_buffer', 'trusted_by_env', 'trusted_checkpoints',
    'load_trusted_checkpoint', 'upgrade_checkpoint'
]
