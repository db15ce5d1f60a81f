"""The package's registries.

``MODELS``, ``DATASETS``, ``TRANSFORMS``, ``METRICS`` and ``HOOKS`` are
children of mmengine's root registries. ``MODELS`` is a child of mmengine's
root ``MODELS`` with scope
``'convattn_mm'``; its ``locations`` import the model modules on first use.
So ``type='convattn_mm.RelPosAttention'`` builds from an mmpretrain, mmdet or
mmpose config with no import: mmengine imports ``convattn_mm.registry`` when it
meets the ``convattn_mm.`` scope prefix. The locations are the model modules
(``convattn_mm.models``), the converters (``convattn_mm.convert``, which
registers ``ConvToAttention``) and ``convattn_mm.engine``, whose optimiser
constructor sits in mmengine's root registry and must be imported before
the Runner builds the optimiser of a ``convattn_mm.`` model.

Importing this module applies :func:`convattn_mm.compat.apply` (idempotent;
it changes nothing for code that does not save, load or launch distributed
jobs).

Inside the package, build sub-modules with :func:`build_module`: it resolves
names in this registry whatever the caller's ``default_scope`` is (a bare
``MODELS.build`` would resolve them in the caller's scope).

What users get wrong, said at build time (:class:`ScopedRegistry`, one
mechanism for every registered class, whichever registry builds it):

* an unknown keyword argument (``embed_dim=64``): a ``TypeError`` naming the
  class, the closest allowed key and all of them;
* a misspelt name (``convattn_mm.ConvAtnNet``): a ``KeyError`` with the
  closest registered names;
* a bare name of this package (``type='ConvAttnNet'``) looked up in another
  package's registry: a ``KeyError`` saying to write ``convattn_mm.ConvAttnNet``.
  mmengine looks a bare name up in the default scope's registry (mmpretrain's,
  mmdet's, ...) and its parents only, never in a sibling such as this one, so
  bare names never resolve there, with or without ``custom_imports``.
"""
import copy
import difflib
import functools
import inspect

from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

from . import compat

compat.apply()  # the stack's fixes, active wherever the registry is imported

SCOPE = 'convattn_mm'


def _closest(key, names, n=3):
    return difflib.get_close_matches(key, list(names), n=n, cutoff=0.6)


def _checked_init(cls):
    """``cls.__init__`` wrapped so that arguments that do not fit its
    signature raise a ``TypeError`` naming the allowed keys and the closest
    one (the check runs before the constructor, so nothing is half-built)."""
    init = cls.__init__
    sig = inspect.signature(init)
    params = list(sig.parameters.values())[1:]  # without self
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return init  # takes any keyword: nothing to check here
    allowed = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                    p.KEYWORD_ONLY)]

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        try:
            sig.bind(self, *args, **kwargs)
        except TypeError as err:
            name = type(self).__name__
            unknown = [k for k in kwargs if k not in allowed]
            if not unknown:
                raise TypeError(f'{name}: {err}; its arguments are '
                                f'{allowed}') from None
            hints = []
            for key in unknown:
                near = _closest(key, allowed, n=1)
                hints.append(f'{key!r}' + (f' (did you mean {near[0]!r}?)'
                                           if near else ''))
            raise TypeError(f'{name} got unexpected keyword argument(s) '
                            f'{", ".join(hints)}; allowed keys: '
                            f'{allowed}') from None
        init(self, *args, **kwargs)

    __init__._convattn_mm_checked = True
    return __init__


class ScopedRegistry(Registry):
    """A registry of this package: registered classes check their keyword
    arguments (:func:`_checked_init`), and a name that is not registered
    raises a ``KeyError`` with the closest registered names when close ones
    exist (mmengine's ``get`` returns None and its build then says only "not
    in the registry")."""

    def _register_module(self, module, module_name=None, force=False):
        if inspect.isclass(module) and not getattr(
                module.__init__, '_convattn_mm_checked', False):
            init = _checked_init(module)
            if init is not module.__init__:
                module.__init__ = init
        return super()._register_module(module, module_name, force)

    def get(self, key):
        found = super().get(key)
        if found is None and isinstance(key, str):
            scope, name = self.split_scope_key(key)
            if scope in (None, self.scope):
                near = _closest(name, self._module_dict)
                if near:
                    raise KeyError(
                        f"type='{self.scope}.{name}' is not registered in "
                        f'{self.scope}.{self.name}; did you mean '
                        f'{[f"{self.scope}.{n}" for n in near]}?')
        return found


def _hint_bare_names():
    """Make mmengine's ``Registry.get`` say, for a bare name that only this
    package registers (``type='ConvAttnNet'`` under mmdet's scope), to use
    the ``convattn_mm.`` prefix. Idempotent; other lookups are unchanged."""
    orig = Registry.get
    if getattr(orig, '_convattn_mm', False):
        return

    @functools.wraps(orig)
    def get(self, key):
        found = orig(self, key)
        if (found is None and isinstance(key, str) and '.' not in key
                and self.scope != SCOPE):
            ours = _ours.get(self._get_root_registry().name)
            if ours is not None and key in ours._module_dict:
                raise KeyError(
                    f'type={key!r} is not in the {self.scope}.{self.name} '
                    f"registry; this package's modules are named with its "
                    f"scope: type='{SCOPE}.{key}'")
        return found

    get._convattn_mm = True
    Registry.get = get


MODELS = ScopedRegistry('model', parent=MMENGINE_MODELS, scope=SCOPE,
                        locations=['convattn_mm.models', 'convattn_mm.convert',
                                   'convattn_mm.engine'])
HOOKS = ScopedRegistry('hook', parent=MMENGINE_HOOKS, scope=SCOPE,
                       locations=['convattn_mm.engine'])
DATASETS = ScopedRegistry('dataset', parent=MMENGINE_DATASETS, scope=SCOPE,
                          locations=['convattn_mm.datasets'])
TRANSFORMS = ScopedRegistry('transform', parent=MMENGINE_TRANSFORMS,
                            scope=SCOPE, locations=['convattn_mm.datasets'])
METRICS = ScopedRegistry('metric', parent=MMENGINE_METRICS, scope=SCOPE,
                         locations=['convattn_mm.evaluation'])
#: root registry name -> this package's child of it (for _hint_bare_names)
_ours = {
    r.parent.name: r
    for r in (MODELS, HOOKS, DATASETS, TRANSFORMS, METRICS)
}
_hint_bare_names()

def build_module(cfg, registry=MODELS, **defaults):
    """Build ``cfg`` (a dict with ``type``: a name in ``registry`` or a class)
    in this package's scope; ``defaults`` fill keys the dict does not set.

    Raises:
        KeyError: naming the unknown type and the registered ones.
    """
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'expected a config dict with a "type" key, got '
                        f'{cfg!r}')
    args = copy.deepcopy(dict(cfg))
    kind = args.pop('type')
    args.pop('_scope_', None)
    if isinstance(kind, str):
        cls = registry.get(kind)
        if cls is None:
            raise KeyError(f'type={kind!r} is not registered in '
                           f'{registry.scope}.{registry.name}; registered: '
                           f'{sorted(registry.module_dict)}')
    else:
        cls = kind
    for key, value in defaults.items():
        args.setdefault(key, value)
    return cls(**args)
