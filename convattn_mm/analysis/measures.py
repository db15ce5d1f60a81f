"""How convolution-like is each head? Measures on captured attention.

Notation (one layer, one head ``h``; the head index is dropped): a *row*
``r`` is one (image, query) pair; its window has slots ``j`` with offsets
``δ_rj`` (map steps) and weights ``a_rj`` (``Σ_j a_rj = 1``). Masked slots
(border ``'mask'``) are excluded everywhere; zero-padded slots (border
``'zeros'``) are ordinary slots that happen to lie outside the map. ``S`` is
the layer's total stride (image pixels per map step), ``R`` the number of
rows, ``N(r)`` the valid slots of row ``r``.

* **mean attention distance** (image pixels)::

      D = (1/R) Σ_r Σ_{j∈N(r)} a_rj · ‖δ_rj ⊙ S‖₂

* **mean kernel** ``E[a | δ]`` -- the attention averaged over the rows whose
  window holds ``δ``::

      M(δ) = Σ_{r,j: δ_rj=δ} a_rj / #{r, j: δ_rj = δ}

* **effective kernel** ``K`` -- the position-only (convolution-like)
  attention that best explains the head: the maximiser of
  ``Σ_r Σ_j a_rj · log( K(δ_rj) / Σ_{j'∈N(r)} K(δ_rj') )`` with
  ``Σ_δ K(δ) = 1`` (a Luce choice model fitted to soft counts by the MM
  iteration ``K(δ) ← Σ_{r,j:δ} a_rj / Σ_{r,j:δ} 1/Z_r``, ``Z_r =
  Σ_{j∈N(r)} K(δ_rj)``). When every row sees the same offsets (border
  ``'zeros'``, or interior queries) ``K = M``, the plain average; at
  ``'shift'``/``'mask'`` borders the fit also accounts for the
  renormalisation over each query's own slots, so a head whose scores
  depend on ``δ`` only is recovered exactly.

  Each row's position-only prediction is ``â_rj = K(δ_rj) / Z_r``.

* **content dependence** -- the share of the variance of ``a`` (over rows
  and slots) that ``δ`` does not explain::

      CD = Σ_{r,j} (a_rj - â_rj)² / Σ_{r,j} (a_rj - ā)²,   ā = mean a

  clipped to [0, 1]; 0 when ``a`` is constant. With identical windows
  ``â = E[a|δ]`` and ``CD = 1 - Var(E[a|δ]) / Var(a)`` (law of total
  variance). 0 for a convolution or any position-only head, near 1 for a
  head driven by content.

* **distance to convolution** -- mean total-variation distance between each
  row's attention and the effective kernel restricted to its slots::

      TV = (1/R) Σ_r ½ Σ_{j∈N(r)} |a_rj - â_rj|        ∈ [0, 1]

  0 exactly when the head acts as a convolution on these images.

Every function takes a :class:`~convattn_mm.analysis.capture.LayerRecord`
and returns per-head tensors ``[H]`` (kernels ``[H, *table_shape]``).
"""
import math

import torch

MEASURES = ('mean_distance', 'content_dependence', 'conv_distance',
            'peak_mass')


def _flat_stats(rec):
    """Attention ``a [H, R, Kw]`` (0 on invalid), validity ``v [R, Kw]``
    float and table indices ``t [R, Kw]``."""
    a = rec.weights.permute(1, 0, 2).double()
    v = rec.valid.double()
    return a * v, v, rec.table


def _scatter(values, table, T):
    """Sum ``values [H, R, Kw]`` (or ``[R, Kw]``) into table bins."""
    flat = table.reshape(-1)
    if values.dim() == 2:
        return values.new_zeros(T).index_add_(0, flat, values.reshape(-1))
    H = values.shape[0]
    return values.new_zeros(H, T).index_add_(1, flat, values.reshape(H, -1))


def mean_attention_distance(rec):
    """``[H]``: ``D = (1/R) Σ_r Σ_j a_rj ‖δ_rj ⊙ S‖`` in image pixels (map
    steps when the record has no stride)."""
    a, _, t = _flat_stats(rec)
    dist = rec.offsets_px().double().norm(dim=-1)  # [T]
    return (a * dist[t]).sum(-1).mean(-1).float()


def mean_kernel(rec):
    """``[H, *table_shape]``: ``E[a | δ]`` over the rows whose window holds
    ``δ`` (0 for offsets no row sees)."""
    a, v, t = _flat_stats(rec)
    T = math.prod(rec.table_shape)
    s, n = _scatter(a, t, T), _scatter(v, t, T)
    m = torch.where(n > 0, s / n.clamp(min=1), torch.zeros_like(s))
    return m.reshape(-1, *rec.table_shape).float()


def effective_kernel(rec, max_iter=300, tol=1e-8):
    """``[H, *table_shape]``: the fitted position-only kernel ``K``
    (``Σ_δ K = 1``; see the module docstring)."""
    return _fit(rec, max_iter, tol)[0].reshape(-1, *rec.table_shape).float()


def _fit(rec, max_iter=300, tol=1e-8):
    """Fit ``K [H, T]``; returns ``K`` and the row predictions ``â [H, R,
    Kw]``."""
    a, v, t = _flat_stats(rec)
    T = math.prod(rec.table_shape)
    mass, count = _scatter(a, t, T), _scatter(v, t, T)
    k = torch.where(count > 0, mass / count.clamp(min=1),
                    torch.zeros_like(mass))
    k = k / k.sum(-1, keepdim=True).clamp(min=1e-300)
    for _ in range(max_iter):
        z = (k[:, t] * v).sum(-1)  # [H, R]
        inv = torch.where(z > 0, 1 / z.clamp(min=1e-300), torch.zeros_like(z))
        denom = _scatter(inv[:, :, None] * v, t, T)
        new = torch.where(denom > 0, mass / denom.clamp(min=1e-300),
                          torch.zeros_like(mass))
        new = new / new.sum(-1, keepdim=True).clamp(min=1e-300)
        done = (new - k).abs().max() <= tol * new.max()
        k = new
        if done:
            break
    kq = k[:, t] * v  # [H, R, Kw]
    z = kq.sum(-1, keepdim=True)
    pred = torch.where(z > 0, kq / z.clamp(min=1e-300), torch.zeros_like(kq))
    return k, pred


def content_dependence(rec, pred=None):
    """``[H]``: ``CD = Σ (a - â)² / Σ (a - ā)²`` over valid slots, clipped to
    [0, 1] (0 for constant attention)."""
    a, v, _ = _flat_stats(rec)
    if pred is None:
        pred = _fit(rec)[1]
    n = v.sum()
    mean = a.sum((1, 2)) / n  # [H]
    total = (((a - mean[:, None, None]) * v)**2).sum((1, 2))
    resid = (((a - pred) * v)**2).sum((1, 2))
    flat = total <= 1e-12 * n * mean**2
    cd = torch.where(flat, torch.zeros_like(total),
                     resid / total.clamp(min=1e-300))
    return cd.clamp(0, 1).float()


def conv_distance(rec, pred=None):
    """``[H]``: ``TV = (1/R) Σ_r ½ Σ_j |a_rj - â_rj|``."""
    a, v, _ = _flat_stats(rec)
    if pred is None:
        pred = _fit(rec)[1]
    return (0.5 * ((a - pred).abs() * v).sum(-1)).mean(-1).float()


def head_measures(rec, max_iter=300, tol=1e-8):
    """All measures of one layer.

    Returns:
        dict: ``mean_distance``, ``content_dependence``, ``conv_distance``,
        ``peak_mass`` (``max_δ K``) ``[H]``; ``peak_offset [H, rank]``
        (argmax of ``K``, image pixels); ``effective_kernel`` and
        ``mean_kernel`` ``[H, *table_shape]``; ``table_offsets [T, rank]``
        (image pixels); ``rows`` (images × queries).
    """
    k, pred = _fit(rec, max_iter, tol)
    offsets = rec.offsets_px()
    peak = k.argmax(-1)
    return dict(
        mean_distance=mean_attention_distance(rec),
        content_dependence=content_dependence(rec, pred),
        conv_distance=conv_distance(rec, pred),
        peak_mass=k.max(-1).values.float(),
        peak_offset=offsets[peak],
        effective_kernel=k.reshape(-1, *rec.table_shape).float(),
        mean_kernel=mean_kernel(rec),
        table_offsets=offsets,
        rows=rec.weights.shape[0])


def measures_to_rows(measures):
    """Flatten ``{layer: head_measures}`` into table rows (one per head):
    ``layer, head, mean_distance, content_dependence, conv_distance,
    peak_mass, peak_offset`` (plain Python types, for CSV/JSON)."""
    rows = []
    for layer, m in measures.items():
        for h in range(len(m['mean_distance'])):
            rows.append(
                dict(layer=layer, head=h,
                     **{k: round(float(m[k][h]), 6)
                        for k in MEASURES},
                     peak_offset=[round(float(x), 3)
                                  for x in m['peak_offset'][h]],
                     rows=int(m['rows'])))
    return rows


def scalar_dict(measures, prefix='attention'):
    """``{'{prefix}/{layer}/head{h}/{measure}': float}`` plus per-layer
    means ``'{prefix}/{layer}/mean/{measure}'`` (for visualiser backends)."""
    out = {}
    for layer, m in measures.items():
        for key in MEASURES:
            vals = m[key]
            for h, val in enumerate(vals.tolist()):
                out[f'{prefix}/{layer}/head{h}/{key}'] = float(val)
            out[f'{prefix}/{layer}/mean/{key}'] = float(vals.mean())
    return out
