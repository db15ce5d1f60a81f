"""Learned relative position bias table (Swin / NAT): ``b^h_δ`` free per head
and offset."""
import torch
from mmengine.logging import print_log
from mmengine.model.weight_init import trunc_normal_

from convattn_mm.registry import MODELS
from convattn_mm.ops import PositionCarry
from .base import RelPosEncoding, interpolate_table


def _resize_on_load(module, state_dict, key, old_to_new):
    """Load hook helper: resize ``state_dict[key]`` to the module's shape."""
    if key not in state_dict:
        return
    ours = getattr(module, key.rsplit('.', 1)[-1])
    theirs = state_dict[key]
    if theirs.shape != ours.shape:
        state_dict[key] = old_to_new(theirs, ours.shape)
        print_log(
            f'resized {key} from {tuple(theirs.shape)} to '
            f'{tuple(ours.shape)} (checkpoint trained with another window)',
            logger='current')


@MODELS.register_module()
class RelativeBiasTable(RelPosEncoding):
    """``b^h_δ``: one learned scalar per head and table offset.

    Parameter ``table [heads, *table_shape]`` (``2·radius+1`` per axis).
    Checkpoints with another table size are resized (bicubic/linear/
    trilinear, centre to centre) when loaded.
    """
    carry = PositionCarry(bias=True)

    def __init__(self, num_heads, head_dims, rank, radius, step,
                 init_std=0.02, init_cfg=None):
        super().__init__(num_heads, head_dims, rank, radius, step, init_cfg)
        self.init_std = init_std
        self.table = torch.nn.Parameter(
            torch.zeros(num_heads, *self.table_shape))
        trunc_normal_(self.table, std=init_std)

    def pos_bias(self, offsets):
        return self.table.flatten(1)[:, self.table_index(offsets)]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        _resize_on_load(
            self, state_dict, prefix + 'table',
            lambda t, shape: interpolate_table(t, shape[1:], self.rank))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
