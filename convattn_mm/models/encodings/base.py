"""The one interface every relative position encoding implements.

A layer evaluates its encoding on the offsets ``δ`` of its window's table (see
:func:`convattn_mm.ops.window_table`) and hands the resulting terms to the op:

* :meth:`RelPosEncoding.pos_bias` -- ``b_δ``, ``[heads, T]`` (position only);
* :meth:`RelPosEncoding.rel_keys` -- ``r_δ``, ``[heads, T, head_dim]``, added
  to the keys: the score reads ``scale · qᵀ(k + r_δ) + b_δ``;
* :meth:`RelPosEncoding.transform_qk` -- changes of ``q`` and ``k`` before the
  op (RoPE rotations, the u term of Transformer-XL);
* :meth:`RelPosEncoding.augment_qk` -- optional: the same scores as extra head
  dimensions, for kernels that carry no bias (NATTEN).

Offsets are integer pixel offsets ``[T, rank]``. Encodings with learned tables
store them over the window they were built for (``radius`` table steps of
``step`` pixels per axis); offsets off that grid are rounded, and offsets
beyond it clamped to the edge (Shaw et al.'s clipping), which is what a layer
whose window shrank on a small map asks for.
"""
import torch
from mmengine.model import BaseModule

from convattn_mm.registry import MODELS


class RelPosEncoding(BaseModule):
    """Base class.

    Args:
        num_heads (int): heads of the layer.
        head_dims (int): query/key dimension per head.
        rank (int): spatial rank (1, 2 or 3).
        radius (tuple[int]): table radius per axis, in steps.
        step (tuple[int]): pixels per table step per axis (the dilation).
    """
    #: whether the terms depend on content (q): rel_keys, RoPE, u
    has_bias = False
    has_rel_keys = False
    can_augment = False

    def __init__(self, num_heads, head_dims, rank, radius, step,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.num_heads, self.head_dims, self.rank = num_heads, head_dims, rank
        self.radius, self.step = tuple(radius), tuple(step)

    @property
    def table_shape(self):
        return tuple(2 * r + 1 for r in self.radius)

    def table_index(self, offsets: torch.Tensor) -> torch.Tensor:
        """Flat index into this encoding's table of each offset ``[T, rank]``
        (rounded to the step, clamped to the radius): ``[T]`` long."""
        idx = torch.zeros(offsets.shape[0], dtype=torch.long,
                          device=offsets.device)
        for a, (r, s) in enumerate(zip(self.radius, self.step)):
            steps = torch.round(offsets[:, a].double() / s).long()
            idx = idx * (2 * r + 1) + steps.clamp(-r, r) + r
        return idx

    def pos_bias(self, offsets):
        """``[heads, T]`` or None."""
        return None

    def rel_keys(self, offsets):
        """``[heads, T, head_dim]`` or None."""
        return None

    def transform_qk(self, q, k, q_coords, k_coords):
        """Change ``q, k`` (``[B, heads, N, head_dim]``) before the op;
        ``*_coords`` are ``[N, rank]`` float pixel coordinates."""
        return q, k

    def extra_repr(self):
        return (f'num_heads={self.num_heads}, rank={self.rank}, '
                f'radius={self.radius}, step={self.step}')


def interpolate_table(table: torch.Tensor, new_shape, spatial_dims):
    """Resize a table whose last ``spatial_dims`` axes (``table_shape``) or
    the axes before a trailing feature axis are spatial; centre stays centre
    (``align_corners=True``). ``table`` is ``[C, *old_shape]``."""
    mode = {1: 'linear', 2: 'bicubic', 3: 'trilinear'}[spatial_dims]
    out = torch.nn.functional.interpolate(
        table[None].float(), size=tuple(new_shape), mode=mode,
        align_corners=True)
    return out[0].to(table.dtype)


def encoding_types():
    """Names of the registered position encodings."""
    return sorted(n for n, c in MODELS.module_dict.items()
                  if isinstance(c, type) and issubclass(c, RelPosEncoding))


def check_encoding(cfg, name):
    """A position-encoding config must be None or a dict whose ``type`` is a
    registered encoding; returns it with the ``convattn_mm.`` prefix
    dropped from ``type``."""
    if cfg is None:
        return None
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'{name}={cfg!r} must be None or a dict with "type"')
    kind = cfg['type']
    short = kind.split('.', 1)[1] if isinstance(kind, str) and kind.startswith(
        'convattn_mm.') else kind
    if short not in encoding_types():
        raise ValueError(f'{name}.type={kind!r} is not a position encoding; '
                         f'choose one of {encoding_types()}')
    return dict(cfg, type=short)
