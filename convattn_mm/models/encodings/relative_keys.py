"""Relative keys with Transformer-XL's u and v terms (Shaw et al. 2018; Dai et
al. 2019; Cordonnier et al. Eq. 8)::

    s_δ = scale · [ qᵀk + qᵀr_δ + uᵀk + vᵀr_δ ]
        = scale · (q+u)ᵀ(k + r_δ) + scale · (v-u)ᵀr_δ

so the op gets the shifted query ``q+u`` (:meth:`transform_qk`), relative
keys ``r_δ`` and the bias ``scale·(v-u)ᵀr_δ``.
"""
import torch
from mmengine.model.weight_init import trunc_normal_

from convattn_mm.registry import MODELS
from .base import RelPosEncoding, interpolate_table
from .bias_table import _resize_on_load


@MODELS.register_module()
class RelativeKeys(RelPosEncoding):
    """Learned ``r_δ`` per head and offset, optional global ``u``, ``v``.

    Parameters: ``keys [heads, head_dim, *table_shape]``, ``u, v
    [heads, head_dim]`` (when ``use_u`` / ``use_v``). ``scale`` must match the
    layer's softmax scale (set by the layer).
    """
    has_bias = True
    has_rel_keys = True
    #: the layer passes its softmax ``scale`` to the constructor
    takes_scale = True

    def __init__(self, num_heads, head_dims, rank, radius, step, use_u=True,
                 use_v=True, init_std=0.02, scale=None, init_cfg=None):
        super().__init__(num_heads, head_dims, rank, radius, step, init_cfg)
        self.scale = head_dims**-0.5 if scale is None else scale
        self.keys = torch.nn.Parameter(
            torch.zeros(num_heads, head_dims, *self.table_shape))
        trunc_normal_(self.keys, std=init_std)
        self.u = torch.nn.Parameter(torch.zeros(num_heads, head_dims)) \
            if use_u else None
        self.v = torch.nn.Parameter(torch.zeros(num_heads, head_dims)) \
            if use_v else None

    def rel_keys(self, offsets):
        keys = self.keys.flatten(2)[:, :, self.table_index(offsets)]
        return keys.transpose(1, 2)  # [H, T, D]

    def pos_bias(self, offsets):
        if self.u is None and self.v is None:
            return None
        w = (self.v if self.v is not None else 0) - \
            (self.u if self.u is not None else 0)
        return self.scale * torch.einsum('htd,hd->ht', self.rel_keys(offsets),
                                         w)

    def transform_qk(self, q, k, q_coords, k_coords):
        if self.u is not None:
            q = q + self.u[None, :, None, :].to(q)
        return q, k

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        _resize_on_load(
            self, state_dict, prefix + 'keys',
            lambda t, shape: interpolate_table(
                t.flatten(0, 1), shape[2:], self.rank).reshape(shape))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
