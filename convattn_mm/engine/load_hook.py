"""``StrictLoadHook``: a checkpoint loaded by the Runner (``load_from``,
``--resume``, ``tools/test.py``) must fit the model exactly.

mmengine's Runner loads with ``strict=False``: missing keys, unexpected keys
and wrong shapes are logged and the model keeps its random weights there, so
a wrong checkpoint gives results that look real. This hook checks the
checkpoint against the model right after it is read (``after_load_checkpoint``,
before any weight is copied) and raises a
:class:`~convattn_mm.compat.CheckpointError` naming the file and the keys.
"""
import re

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from convattn_mm.compat import CheckpointError, last_loaded
from convattn_mm.registry import HOOKS

#: keys listed per kind in the message (then "... and N more")
SHOWN_KEYS = 8


def _prefixes(keys, depth=2):
    return sorted({'.'.join(k.split('.')[:depth]) for k in keys})


def _listed(keys):
    keys = sorted(keys)
    more = len(keys) - SHOWN_KEYS
    return str(keys[:SHOWN_KEYS]) + (f' ... and {more} more' if more > 0
                                     else '')


def state_dict_mismatch(model, state_dict, revise_keys=((r'^module\.', ''), )):
    """Compare ``state_dict`` with ``model.state_dict()`` (after the Runner's
    ``revise_keys``).

    Returns:
        dict ``missing`` (model keys absent from the checkpoint),
        ``unexpected`` (checkpoint keys the model lacks), ``shapes`` (``{key:
        (checkpoint shape, model shape)}``); all empty when it fits.
    """
    revised = {}
    for key, value in state_dict.items():
        for pattern, repl in revise_keys:
            key = re.sub(pattern, repl, key)
        revised[key] = value
    own = model.state_dict()
    shapes = {
        k: (tuple(revised[k].shape), tuple(v.shape))
        for k, v in own.items() if k in revised
        and hasattr(revised[k], 'shape') and revised[k].shape != v.shape
    }
    return dict(missing=sorted(set(own) - set(revised)),
                unexpected=sorted(set(revised) - set(own)), shapes=shapes)


def mismatch_message(filename, model_keys, mismatch):
    """The error text for :func:`state_dict_mismatch`'s result."""
    lines = [f'{filename!r} does not fit the model (strict loading):']
    if mismatch['missing']:
        lines.append(
            f"  missing from the checkpoint: {len(mismatch['missing'])} of "
            f"{model_keys} model keys, under {_prefixes(mismatch['missing'])}"
            f": {_listed(mismatch['missing'])}")
    if mismatch['unexpected']:
        lines.append(
            f"  not in the model: {len(mismatch['unexpected'])} checkpoint "
            f"keys, under {_prefixes(mismatch['unexpected'])}: "
            f"{_listed(mismatch['unexpected'])}")
    if mismatch['shapes']:
        shown = [f'{k}: checkpoint {a} vs model {b}'
                 for k, (a, b) in sorted(mismatch['shapes'].items())]
        lines.append(f"  wrong shapes: {len(shown)} keys: "
                     f"{_listed(shown)}")
    lines.append('Load what fits only if you mean to: tools/test.py and '
                 'tools/train.py --load-partial (or drop StrictLoadHook).')
    return '\n'.join(lines)


@HOOKS.register_module()
class StrictLoadHook(Hook):
    """Refuse a checkpoint that does not fit the model (see the module
    docstring). ``tools/test.py`` and ``tools/train.py --resume`` add it
    unless given ``--load-partial``; in a config::

        custom_hooks = [dict(type='convattn_mm.StrictLoadHook')]

    Raises:
        CheckpointError: in ``after_load_checkpoint``, naming the file, the
            missing and unexpected keys (with their prefixes) and the wrong
            shapes.
    """
    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint):
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        state_dict = checkpoint.get('state_dict', checkpoint)
        mismatch = state_dict_mismatch(model, state_dict)
        if any(mismatch.values()):
            raise CheckpointError(
                mismatch_message(last_loaded() or '<checkpoint>',
                                 len(model.state_dict()), mismatch))
