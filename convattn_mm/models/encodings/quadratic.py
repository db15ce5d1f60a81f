"""Cordonnier et al.'s quadratic relative encoding (ICLR 2020, Sec. 3).

Head ``h`` has a centre ``Δ_h`` (pixels) and a width; the position score is

    isotropic:  b^h_δ = -α_h ‖δ - Δ_h‖²
    full:       b^h_δ = -(δ - Δ_h)ᵀ A_h (δ - Δ_h),   A_h = L_h L_hᵀ

(the paper's ``vᵀr_δ`` with ``r_δ = (‖δ‖², δ)`` up to a term constant over
``δ``, which the softmax ignores). With ``Δ_h`` on the K×K grid and
``α → ∞`` head ``h`` attends to ``q + Δ_h`` only: a convolution.

**Mass at initialisation.** On a window of ``n`` offsets whose other offsets
are at squared distance ``>= m`` from ``Δ_h``, the weight on ``Δ_h`` (no
content) is ``>= 1/(1 + (n-1)·exp(-α·m))``, so mass ``>= 1-ε`` needs

    α >= ln((n-1)(1-ε)/ε) / m          (:func:`alpha_for_mass`).

**Without a bias input** (NATTEN) the same score is a dot product of extra
head dimensions (:meth:`QuadraticEncoding.augment_qk`): with key position
``p_k`` and query position ``p_q`` (``δ = p_k - p_q``),
``-(δ-Δ)ᵀA(δ-Δ) = -p_kᵀAp_k + 2p_kᵀA(p_q+Δ) + c(q)``, so the query gets
``[vec(A), 2A(p_q+Δ)]`` and the key ``[-vec(p_k p_kᵀ), p_k]``. Exact in real
arithmetic; in float32 the terms grow like ``α·(L/2)²`` for an ``L``-wide map
(coordinates are centred), so the score error is about
``1e-7 · α · (L/2)² · rank``: fine for ``α·(L/2)² <~ 1e4`` (error
``~1e-3``); use a bias backend or float64 beyond.

**Conv-init** (``init_centres='conv'``, rank 2): head ``h`` starts on the
``h``-th offset of a 3×3 convolution's grid in :data:`CONV_INIT_OFFSETS`
order (centre, 4-neighbours, corners; times the step), so 9 heads form a
3×3 conv's receptive field and fewer heads its most central offsets;
:func:`conv_init_encoding` is the config the backbones use, and
:func:`convattn_mm.convert.resnet_to_saresnet` maps a conv's weights onto
heads in the same order.
"""
import math

import torch

from convattn_mm.registry import MODELS
from convattn_mm.utils import check_choice

from .base import RelPosEncoding

MODES = ('full', 'isotropic')
CENTRE_INITS = ('conv', 'grid')
#: the smallest initial ``α`` (a mass at or below uniform gives ``α <= 0``)
ALPHA_FLOOR = 1e-3
#: conv-init head centres on the 3×3 grid: centre, 4-neighbours, corners
CONV_INIT_OFFSETS = ((0, 0), (0, 1), (1, 0), (0, -1), (-1, 0), (1, 1),
                     (1, -1), (-1, 1), (-1, -1))


def alpha_for_mass(num_offsets: int, eps: float, min_sq_dist: float = 1.0):
    """Smallest ``α`` with mass ``>= 1-eps`` on the centre offset."""
    if not 0 < eps < 1:
        raise ValueError(f'eps={eps!r} must lie in (0, 1)')
    if num_offsets <= 1:
        return 0.0
    return math.log((num_offsets - 1) * (1 - eps) / eps) / min_sq_dist


def grid_centres(num_heads, kernel, step):
    """Head ``h`` -> the h-th offset of the ``kernel`` grid (row-major, with
    ``step`` pixels between members), cycling when heads > grid size.
    Returns ``[heads, rank]`` float."""
    axes = [(torch.arange(k) - (k - 1) // 2) * s for k, s in zip(kernel, step)]
    grid = torch.stack([m.reshape(-1) for m in torch.meshgrid(*axes,
                                                              indexing='ij')],
                       dim=-1).float()
    return grid[torch.arange(num_heads) % grid.shape[0]]


def conv_centres(num_heads, step):
    """Head ``h`` -> ``CONV_INIT_OFFSETS[h % 9]`` times ``step`` (2-D).
    Returns ``[heads, 2]`` float."""
    offsets = torch.tensor(CONV_INIT_OFFSETS, dtype=torch.float)
    idx = torch.arange(num_heads) % len(CONV_INIT_OFFSETS)
    return offsets[idx] * torch.tensor(step, dtype=torch.float)


def conv_init_encoding(init_mass, overrides=None):
    """Config of a conv-initialised :class:`QuadraticEncoding`: isotropic,
    centres in :data:`CONV_INIT_OFFSETS` order, ``α`` putting ``init_mass``
    on each head's offset of the 3×3 grid; ``overrides`` (a dict without
    ``type``) replace any of those keys."""
    cfg = dict(type='QuadraticEncoding', mode='isotropic', init_kernel=3,
               init_mass=init_mass, init_centres='conv')
    cfg.update(overrides or {})
    return cfg


@MODELS.register_module()
class QuadraticEncoding(RelPosEncoding):
    """Quadratic encoding with learned centres and widths.

    Args:
        mode: ``'isotropic'`` (``α_h``) or ``'full'`` (``A_h``).
        init_kernel: grid the centres start on (odd per axis); default the
            layer's window (clipped to 3 per axis when larger than heads).
        init_mass: attention mass ``1-ε`` on the centre at initialisation
            (sets ``α``, at least :data:`ALPHA_FLOOR`; see
            :func:`alpha_for_mass`), or None for ``α = 1``.
        init_centres: ``'grid'`` (default: the ``init_kernel`` grid in
            row-major order, :func:`grid_centres`) or ``'conv'`` (rank 2:
            :data:`CONV_INIT_OFFSETS` order, :func:`conv_centres`).
    Parameters: ``centres [heads, rank]`` (pixels), ``log_alpha [heads]``
    (isotropic) or ``chol [heads, rank, rank]`` (full, lower triangle used).
    """
    has_bias = True
    can_augment = True

    def __init__(self, num_heads, head_dims, rank, radius, step,
                 mode='isotropic', init_kernel=None, init_mass=0.9,
                 init_centres='grid', init_cfg=None):
        super().__init__(num_heads, head_dims, rank, radius, step, init_cfg)
        check_choice(mode, MODES, 'mode')
        check_choice(init_centres, CENTRE_INITS, 'init_centres')
        if init_centres == 'conv' and rank != 2:
            raise ValueError(f"init_centres='conv' needs rank 2 (a 3×3 "
                             f"conv's offsets), got rank={rank}")
        self.mode = mode
        if init_kernel is None:
            side = max(1, int(math.isqrt(num_heads)))
            side -= 1 - side % 2
            init_kernel = tuple(min(2 * r + 1, side) for r in self.radius)
        elif isinstance(init_kernel, int):
            init_kernel = (init_kernel, ) * rank
        self.init_kernel = tuple(init_kernel)
        n = math.prod(self.init_kernel)
        alpha = 1.0 if init_mass is None else max(
            alpha_for_mass(n, 1 - init_mass, min(self.step)**2), ALPHA_FLOOR)
        self.init_centres = init_centres
        centres = (conv_centres(num_heads, self.step) if init_centres == 'conv'
                   else grid_centres(num_heads, self.init_kernel, self.step))
        self.centres = torch.nn.Parameter(centres)
        if mode == 'isotropic':
            self.log_alpha = torch.nn.Parameter(
                torch.full((num_heads, ), math.log(alpha)))
        else:
            self.chol = torch.nn.Parameter(
                torch.eye(rank).repeat(num_heads, 1, 1) * math.sqrt(alpha))

    def precision(self):
        """``A_h``: ``[heads, rank, rank]``."""
        if self.mode == 'isotropic':
            eye = torch.eye(self.rank, device=self.centres.device)
            return self.log_alpha.exp()[:, None, None] * eye
        low = torch.tril(self.chol)
        return low @ low.transpose(1, 2)

    def pos_bias(self, offsets):
        diff = offsets.to(self.centres)[None] - self.centres[:, None]  # HTr
        return -torch.einsum('htr,hrs,hts->ht', diff, self.precision(), diff)

    def augment_qk(self, q, k, q_coords, k_coords, scale):
        """Append the quadratic score as extra head dims (see module doc).

        Args:
            q, k: ``[B, H, N, D]``; ``*_coords``: ``[N, rank]`` float.
            scale: the op's softmax scale (the extra query dims are divided
                by it so the scaled dot product adds exactly ``b_δ``).
        Returns:
            ``q', k'``: ``[B, H, N, D + rank² + rank]``.
        """
        A = self.precision().to(q)  # [H, r, r]
        centre = torch.cat([q_coords, k_coords]).mean(0)
        pq = (q_coords - centre).to(q)[None] + self.centres.to(q)[:, None]
        pk = (k_coords - centre).to(q)
        r = self.rank
        q_extra = torch.cat([
            A.reshape(-1, 1, r * r).expand(-1, pq.shape[1], -1),
            2 * torch.einsum('hrs,hns->hnr', A, pq)
        ], -1) / scale  # [H, Nq, r²+r]
        k_extra = torch.cat([
            -(pk[:, :, None] * pk[:, None, :]).reshape(-1, r * r), pk
        ], -1)  # [Nk, r²+r]
        B = q.shape[0]
        q = torch.cat([q, q_extra[None].expand(B, -1, -1, -1)], -1)
        k = torch.cat(
            [k, k_extra[None, None].expand(B, k.shape[1], -1, -1)], -1)
        return q, k

    def extra_repr(self):
        return super().extra_repr() + f', mode={self.mode!r}'
