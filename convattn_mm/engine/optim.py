"""Layer-wise learning-rate decay for detectors and pose estimators.

mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` asks the *model*
for ``get_layer_depth``; an mmpretrain classifier has it, an mmdet detector
or an mmpose estimator does not (and mmdet's own
``LearningRateDecayOptimizerConstructor`` only knows ConvNeXt parameter
names). ``BackboneLayerDecayOptimWrapperConstructor`` asks the model's
*backbone* instead: a parameter named ``backbone.<name>`` gets the
backbone's ``get_layer_depth(<name>)`` id; every other parameter (neck,
heads) is in the top layer. With ``N + 2`` layers, the learning rate of
layer ``i`` is::

    lr_i = lr · layer_decay_rate ** (N + 1 - i)

so the heads train at ``lr`` and the stem at ``lr · rate^(N+1)``. The other
``paramwise_cfg`` keys are mmpretrain's (``norm_decay_mult``,
``bias_decay_mult``, ``flat_decay_mult``, ``custom_keys`` with
``decay_mult``).

It is registered in mmengine's root ``OPTIM_WRAPPER_CONSTRUCTORS`` (an
optimiser is built by mmengine's Runner in the root scope, whatever the
config's ``default_scope``), so
``constructor='BackboneLayerDecayOptimWrapperConstructor'`` resolves from
mmdet, mmpose and mmpretrain configs once ``convattn_mm.engine`` is imported:
the package registry's ``locations`` import it when a ``convattn_mm.`` model
is built, before the Runner builds the optimiser.
"""
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmpretrain.engine.optimizers import \
    LearningRateDecayOptimWrapperConstructor


def backbone_layer_depth(model, prefix='backbone.'):
    """``name -> (layer_id, num_layers)`` through ``model.backbone``.

    Raises:
        TypeError: the model has no ``backbone`` with ``get_layer_depth``.
    """
    if hasattr(model, 'get_layer_depth'):
        return model.get_layer_depth
    backbone = getattr(model, 'backbone', None)
    if backbone is None or not hasattr(backbone, 'get_layer_depth'):
        raise TypeError(
            f'layer-wise lr decay needs model.get_layer_depth or '
            f'model.backbone.get_layer_depth; {type(model).__name__} '
            f'(backbone {type(backbone).__name__}) has neither')
    # the backbone's own answer for its parameters; one call with an outside
    # name gives the total and the "top" id
    top, total = backbone.get_layer_depth('__outside__', prefix=prefix)

    def layer_depth(name):
        if name.startswith(prefix):
            return backbone.get_layer_depth(name, prefix=prefix)
        return top, total

    return layer_depth


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class BackboneLayerDecayOptimWrapperConstructor(
        LearningRateDecayOptimWrapperConstructor):
    """mmpretrain's layer-decay constructor, with the layer depth taken from
    ``model.backbone`` when the model itself has no ``get_layer_depth``
    (see the module docstring)."""

    def add_params(self, params, module, prefix='', get_layer_depth=None,
                   **kwargs):
        if get_layer_depth is None and prefix == '':
            get_layer_depth = backbone_layer_depth(module)
        super().add_params(params, module, prefix=prefix,
                           get_layer_depth=get_layer_depth, **kwargs)
