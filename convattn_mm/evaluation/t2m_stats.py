"""The text-to-motion field's statistics on embeddings (numpy).

Definitions as in Guo et al. (CVPR 2022) and the papers that report on
HumanML3D / KIT-ML since: embeddings come from the T2M evaluator
(:mod:`.t2m_evaluator`); distances are Euclidean.
"""
import numpy as np


def euclidean_distances(a, b):
    """``[N, D]``, ``[M, D]`` -> ``[N, M]`` Euclidean distances."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sq = ((a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None])
    return np.sqrt(np.clip(sq, 0, None))


def r_precision(text, motion, batch_size=32, top_k=3):
    """R-precision and MM-Dist in groups of ``batch_size`` pairs.

    For each group of ``batch_size`` (text, motion) pairs (an incomplete
    last group is dropped), rank the group's motions by distance to each
    text; top-k precision is the fraction of texts whose own motion is
    among the k nearest (ties by a stable sort). MM-Dist is the mean
    distance text_i <-> motion_i over the same pairs.

    Args:
        text, motion: ``[N, D]`` embeddings, pair i = row i.
        batch_size (int): group size (32 in the field).
        top_k (int): largest k reported.

    Returns:
        tuple: (``[top_k]`` precision at k = 1..top_k, MM-Dist).

    Raises:
        ValueError: if ``N < batch_size``.
    """
    text, motion = np.asarray(text), np.asarray(motion)
    n = len(text) // batch_size * batch_size
    if n == 0:
        raise ValueError(f'r_precision needs at least batch_size='
                         f'{batch_size} pairs, got {len(text)}')
    hits, dists = np.zeros(top_k), []
    for start in range(0, n, batch_size):
        d = euclidean_distances(text[start:start + batch_size],
                                motion[start:start + batch_size])
        own = np.diag(d)
        order = np.argsort(d, axis=1, kind='stable')
        rank = (order == np.arange(len(d))[:, None]).argmax(1)
        hits += [(rank < k).sum() for k in range(1, top_k + 1)]
        dists.append(own)
    return hits / n, float(np.concatenate(dists).mean())


def activation_statistics(x):
    """``[N, D]`` -> (mean ``[D]``, covariance ``[D, D]``)."""
    x = np.asarray(x, np.float64)
    return x.mean(0), np.cov(x, rowvar=False)


def frechet_distance(mu1, cov1, mu2, cov2):
    """Fréchet distance of two Gaussians:
    ``|mu1 - mu2|² + tr(C1) + tr(C2) - 2 tr((C1^½ C2 C1^½)^½)``.

    The last trace equals ``tr((C1 C2)^½)``; it is taken from the
    eigenvalues of the symmetric ``C1^½ C2 C1^½`` (clipped at 0)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    w, v = np.linalg.eigh((cov1 + cov1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = root1 @ cov2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    cross = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * cross)


def fid(a, b):
    """Fréchet distance between the Gaussian fits of ``a`` and ``b``."""
    return frechet_distance(*activation_statistics(a),
                            *activation_statistics(b))


def diversity(x, times, rng):
    """Mean distance between ``times`` random pairs of rows of ``x [N, D]``
    (two draws of ``times`` distinct indices, paired in order)."""
    x = np.asarray(x)
    if len(x) < times:
        raise ValueError(f'diversity_times={times} must be <= the number of '
                         f'samples, {len(x)}')
    first = rng.choice(len(x), times, replace=False)
    second = rng.choice(len(x), times, replace=False)
    return float(np.linalg.norm(x[first] - x[second], axis=1).mean())


def multimodality(x, times, rng):
    """``x [N, R, D]``: R generations per text. Mean distance between
    ``times`` random pairs of generations of the same text, over texts."""
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[1] < times:
        raise ValueError(f'multimodality needs [N, R, D] with R >= mm_times='
                         f'{times}, got shape {x.shape}')
    first = rng.choice(x.shape[1], times, replace=False)
    second = rng.choice(x.shape[1], times, replace=False)
    return float(np.linalg.norm(x[:, first] - x[:, second], axis=2).mean())
