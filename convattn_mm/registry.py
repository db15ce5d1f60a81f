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
"""
import copy

from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

from . import compat

compat.apply()  # the stack's fixes, active wherever the registry is imported

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='convattn_mm',
                  locations=['convattn_mm.models', 'convattn_mm.convert',
                             'convattn_mm.engine'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='convattn_mm',
                 locations=['convattn_mm.engine'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='convattn_mm',
                    locations=['convattn_mm.datasets'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS,
                      scope='convattn_mm', locations=['convattn_mm.datasets'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='convattn_mm',
                   locations=['convattn_mm.evaluation'])


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
