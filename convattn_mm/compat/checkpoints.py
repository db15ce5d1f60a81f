"""Checkpoints of the pinned stack that load under ``weights_only=True``
(see ``docs/design.md``, "The stack").

:func:`apply` is idempotent; :func:`convattn_mm.compat.apply` calls it (with
the distributed fix), and importing ``convattn_mm.registry`` does that, i.e.
whenever a config names a ``convattn_mm.`` type. It patches at import time
(nothing installed is edited on disk):

1. **Checkpoints that load under** ``weights_only=True`` (torch >= 2.6's
   default). mmengine 0.10.7's Runner saves

   - numpy scalars, arrays and dtypes (``runtime_info['eta']``, dataset
     meta): allow-listed with :func:`torch.serialization.add_safe_globals`,
     under both the numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``)
     names, as is ``collections.Counter`` (``MultiStepLR.milestones``);
   - message-hub :class:`~mmengine.logging.HistoryBuffer` objects, whose
     pickle holds functions fetched with ``builtins.getattr``. Allow-listing
     ``getattr`` would defeat ``weights_only``, so instead every checkpoint
     saved through :func:`mmengine.runner.checkpoint.save_checkpoint` (the
     Runner's, the FlexibleRunner strategies' and the hooks' path) has its
     buffers replaced by plain dicts (:func:`plain_history_buffers`; numpy
     scalars become Python scalars on the way), and
     :meth:`MessageHub.load_state_dict` turns them back into buffers
     (:func:`restore_history_buffers`), so ``--resume`` keeps the logs.

2. **Loading through mmengine** (``load_from``, ``--resume``,
   ``init_cfg=dict(type='Pretrained')``, :func:`load_checkpoint`): mmengine
   calls :func:`torch.load` without ``weights_only``; with the allow-list and
   the plain message hub, checkpoints written by this stack load under the
   default ``weights_only=True``. A checkpoint that does not (e.g. one
   written by mmengine without this package) fails with an error that says
   how to trust it.

**Trusted sources only**: an old checkpoint with pickled objects loads with
full pickle (which can run arbitrary code) only when asked explicitly:

- environment variable ``CONVATTN_MM_TRUSTED_CHECKPOINTS=1`` (affects
  checkpoints loaded through mmengine's ``CheckpointLoader`` only, logs a
  warning naming each file), or
- ``with trusted_checkpoints(): runner.train()`` in Python, or
- :func:`load_trusted_checkpoint` for one file; :func:`upgrade_checkpoint`
  rewrites such a file once as a plain one that loads safely afterwards.
"""
import collections
import contextlib
import logging
import os
import pickle
import threading
import warnings

import numpy as np
import torch

TRUST_ENV = 'CONVATTN_MM_TRUSTED_CHECKPOINTS'
_TAG = '__convattn_mm_type__'
_HISTORY = 'mmengine.HistoryBuffer'
_TRUE = ('1', 'y', 'yes', 'true', 'on')

_applied = False
_lock = threading.Lock()
_trust_depth = threading.local()


# --------------------------------------------------------------------------
# allow-list
# --------------------------------------------------------------------------
def safe_globals():
    """The globals this package allow-lists for ``weights_only`` loading.

    Returns:
        list of ``(object, 'module.name')`` pairs: numpy scalars, arrays
        (``_reconstruct`` + ``ndarray``: their elements still go through the
        restricted unpickler), ``numpy.dtype`` and its per-type classes, and
        ``collections.Counter``. No function that can call arbitrary code.
    """
    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    pairs = []
    for mod in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        pairs.append((multiarray.scalar, f'{mod}.scalar'))
        pairs.append((multiarray._reconstruct, f'{mod}._reconstruct'))
    pairs += [(np.ndarray, 'numpy.ndarray'), (np.dtype, 'numpy.dtype'),
              (collections.Counter, 'collections.Counter')]
    dtypes = getattr(np, 'dtypes', None)  # numpy >= 1.25
    if dtypes is not None:
        for name in dir(dtypes):
            cls = getattr(dtypes, name)
            if isinstance(cls, type) and issubclass(cls, np.dtype):
                pairs.append((cls, f'numpy.dtypes.{name}'))
    return pairs


def read_weights_only(path, map_location='cpu'):
    """``torch.load(path, weights_only=True)`` with :func:`safe_globals`
    allowed (whether or not :func:`apply` has run).

    Raises:
        pickle.UnpicklingError: the file holds other objects.
    """
    # only those not allowed yet: leaving the context removes what it added,
    # which must not undo apply()
    allowed = torch.serialization.get_safe_globals()
    missing = [g for g in safe_globals() if g not in allowed]
    with torch.serialization.safe_globals(missing):
        return torch.load(path, map_location=map_location, weights_only=True)


# --------------------------------------------------------------------------
# HistoryBuffer <-> plain data
# --------------------------------------------------------------------------
def _history_buffer_cls():
    from mmengine.logging import HistoryBuffer
    return HistoryBuffer


def _array_to_plain(arr):
    arr = np.asarray(arr)
    if arr.dtype.kind in 'biuf':
        return torch.from_numpy(np.ascontiguousarray(arr).copy())
    return arr.tolist()


def _plain_to_array(value):
    if isinstance(value, torch.Tensor):
        return value.numpy()
    return np.array(value)


def map_containers(obj, leaf):
    """Apply ``leaf`` to ``obj`` and, where it returns ``obj`` unchanged and
    ``obj`` is a dict, list or tuple (not a namedtuple), to every item at any
    depth. Containers are rebuilt (same class; ``OrderedDict`` kept) only
    where an item changed, so an untouched input comes back as itself."""
    new = leaf(obj)
    if new is not obj:
        return new
    if isinstance(obj, dict):
        items = {k: map_containers(v, leaf) for k, v in obj.items()}
        if all(items[k] is obj[k] for k in obj):
            return obj
        out = obj.__class__() if isinstance(
            obj, collections.OrderedDict) else {}
        out.update(items)
        return out
    if isinstance(obj, (list, tuple)) and not hasattr(obj, '_fields'):
        items = [map_containers(v, leaf) for v in obj]
        if all(a is b for a, b in zip(items, obj)):
            return obj
        return type(obj)(items)
    return obj


def plain_history_buffers(obj):
    """Return ``obj`` with every ``HistoryBuffer`` (at any depth of dicts,
    lists and tuples) replaced by a plain dict

        {'__convattn_mm_type__': 'mmengine.HistoryBuffer', 'max_length': int,
         'log_history': Tensor[n], 'count_history': Tensor[n]}

    (exact dtypes kept), and numpy scalars (``np.float64`` etc.) by Python
    scalars, so that a checkpoint without numpy arrays or ``Counter`` loads
    under ``weights_only=True`` even where this package is not imported.
    Containers are rebuilt only where something changed; the input is not
    modified.
    """
    cls = _history_buffer_cls()

    def plain(x):
        if isinstance(x, cls):
            return {_TAG: _HISTORY, 'max_length': int(x.max_length),
                    'log_history': _array_to_plain(x._log_history),
                    'count_history': _array_to_plain(x._count_history)}
        if isinstance(x, np.generic) and x.dtype.kind in 'biuf':
            return x.item()
        return x

    return map_containers(obj, plain)


def is_plain_history_buffer(obj):
    """True for a dict written by :func:`plain_history_buffers`."""
    return isinstance(obj, dict) and obj.get(_TAG) == _HISTORY


def restore_history_buffers(obj):
    """Inverse of :func:`plain_history_buffers`: plain dicts -> buffers."""
    cls = _history_buffer_cls()

    def restore(x):
        if not is_plain_history_buffer(x):
            return x
        buf = cls(max_length=x['max_length'])
        buf._log_history = _plain_to_array(x['log_history'])
        buf._count_history = _plain_to_array(x['count_history'])
        return buf

    return map_containers(obj, restore)


# --------------------------------------------------------------------------
# trusted loading
# --------------------------------------------------------------------------
def trusted_by_env():
    """True when ``CONVATTN_MM_TRUSTED_CHECKPOINTS`` is set to 1/yes/true."""
    return os.environ.get(TRUST_ENV, '').strip().lower() in _TRUE


def _trusted():
    return trusted_by_env() or getattr(_trust_depth, 'n', 0) > 0


@contextlib.contextmanager
def trusted_checkpoints():
    """Within this block, checkpoints loaded through mmengine's
    ``CheckpointLoader`` (``load_from``, ``resume``, ``Pretrained``) use full
    pickle. Only for files from a source you trust: unpickling can run
    arbitrary code."""
    _trust_depth.n = getattr(_trust_depth, 'n', 0) + 1
    try:
        yield
    finally:
        _trust_depth.n -= 1


@contextlib.contextmanager
def _torch_load_without_weights_only():
    # torch reads this variable on every torch.load call that does not pass
    # weights_only; mmengine's loaders never pass it.
    key = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'
    old = os.environ.get(key)
    os.environ[key] = '1'
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='.*TORCH_FORCE_NO_WEIGH')
            yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def load_trusted_checkpoint(filename, map_location='cpu'):
    """Load ``filename`` with full pickle (``weights_only=False``).

    Only for checkpoints from a trusted source (unpickling can run arbitrary
    code). The object is returned as stored: message-hub buffers written as
    plain data stay plain dicts until ``MessageHub.load_state_dict`` (patched
    by :func:`apply`) or :func:`restore_history_buffers` turns them back.
    """
    warnings.warn(f'loading {filename!r} with weights_only=False (trusted '
                  'source)', UserWarning, stacklevel=2)
    ckpt = torch.load(filename, map_location=map_location,
                      weights_only=False)
    return ckpt


def upgrade_checkpoint(src, dst, map_location='cpu'):
    """Rewrite a trusted old checkpoint ``src`` as ``dst`` that loads with
    ``weights_only=True`` (message-hub buffers -> plain data).

    Raises:
        pickle.UnpicklingError: if ``dst`` still holds globals outside the
            allow-list (they are named); ``dst`` is removed then.
    """
    apply()
    ckpt = load_trusted_checkpoint(src, map_location=map_location)
    torch.save(plain_history_buffers(ckpt), dst)
    try:
        torch.load(dst, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(dst)
        os.remove(dst)
        raise pickle.UnpicklingError(
            f'{src!r} holds objects that are not plain data even after '
            f'conversion: {unsafe}; it can only be loaded trusted')
    return dst


def _untrusted_message(filename, err):
    return (f'{filename!r} does not load with weights_only=True: {err}\n'
            'If (and only if) the file comes from a source you trust, load it '
            f'with full pickle: set {TRUST_ENV}=1, or use '
            'convattn_mm.compat.trusted_checkpoints() / '
            'load_trusted_checkpoint(); convattn_mm.compat.'
            'upgrade_checkpoint(src, dst) (or '
            'tools/misc/upgrade_checkpoint.py) rewrites it once as a '
            'checkpoint that loads safely.')


# --------------------------------------------------------------------------
# patches
# --------------------------------------------------------------------------
def _patch_save():
    from mmengine.runner import checkpoint as ckpt_mod
    orig = ckpt_mod.save_checkpoint
    if getattr(orig, '_convattn_mm', False):
        return

    def save_checkpoint(checkpoint, filename, *args, **kwargs):
        return orig(plain_history_buffers(checkpoint), filename, *args,
                    **kwargs)

    save_checkpoint.__doc__ = orig.__doc__
    save_checkpoint.__wrapped__ = orig
    save_checkpoint._convattn_mm = True
    ckpt_mod.save_checkpoint = save_checkpoint
    # modules that imported the function by name
    import sys
    for name in ('mmengine.runner', 'mmengine.runner.runner',
                 'mmengine.runner._flexible_runner',
                 'mmengine._strategy.deepspeed',
                 'mmengine._strategy.colossalai'):
        mod = sys.modules.get(name)
        if mod is not None and getattr(mod, 'save_checkpoint', None) is orig:
            mod.save_checkpoint = save_checkpoint


def _patch_message_hub():
    from mmengine.logging import MessageHub
    orig = MessageHub.load_state_dict
    if getattr(orig, '_convattn_mm', False):
        return

    def load_state_dict(self, state_dict):
        if isinstance(state_dict, dict):
            state_dict = restore_history_buffers(state_dict)
        return orig(self, state_dict)

    load_state_dict.__doc__ = orig.__doc__
    load_state_dict.__wrapped__ = orig
    load_state_dict._convattn_mm = True
    MessageHub.load_state_dict = load_state_dict


def _patch_loader():
    from mmengine.logging import print_log
    from mmengine.runner.checkpoint import CheckpointLoader
    orig = CheckpointLoader.__dict__['load_checkpoint'].__func__
    if getattr(orig, '_convattn_mm', False):
        return

    def load_checkpoint(cls, filename, map_location=None, logger='current'):
        if _trusted():
            print_log(f'loading {filename} with weights_only=False: trusted '
                      f'source ({TRUST_ENV} or trusted_checkpoints())',
                      logger=logger, level=logging.WARNING)
            with _torch_load_without_weights_only():
                return orig(cls, filename, map_location, logger)
        try:
            return orig(cls, filename, map_location, logger)
        except pickle.UnpicklingError as err:
            raise pickle.UnpicklingError(
                _untrusted_message(filename, err)) from err

    load_checkpoint.__doc__ = orig.__doc__
    load_checkpoint.__wrapped__ = orig
    load_checkpoint._convattn_mm = True
    CheckpointLoader.load_checkpoint = classmethod(load_checkpoint)


def apply():
    """Install the checkpoint fixes above (idempotent, thread-safe).
    Returns True."""
    global _applied
    with _lock:
        if _applied:
            return True
        add = getattr(torch.serialization, 'add_safe_globals', None)
        if add is not None:  # torch >= 2.4
            add(safe_globals())
        _patch_save()
        _patch_message_hub()
        _patch_loader()
        _applied = True
    return True


def is_applied():
    """True once :func:`apply` has run."""
    return _applied
