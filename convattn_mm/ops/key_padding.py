"""Key padding for rank-1 maps: a batch of sequences of different lengths.

A batch ``[B, N, ...]`` holds sample ``b``'s tokens at ``0 .. L_b - 1`` and
padding after them. With ``key_lengths = (L_b)`` the op computes, for every
valid query ``q < L_b``::

    out_q = Σ_{δ ∈ N(q), q+δ < L_b} softmax_δ(s_{q,δ}) · v_{q+δ}

so padded keys get zero weight and the valid outputs do not depend on the
padding. Under the ``'mask'`` border and for global windows this is exactly
the attention of sample ``b`` run alone on a map of length ``L_b``; under
``'shift'`` (windows move inward at the border) and ``'zeros'`` (zero keys
take softmax mass) it would not be, so those rules are refused. Padded
queries (``q >= L_b``) output zeros.

Backends that carry the mask: ``reference`` (dense, tests) and ``gather``;
``'auto'`` takes ``gather``. The others raise ``NotImplementedError``.
"""
from typing import Optional

import torch

from .functional import check_backend
from .gather import gather_attention
from .reference import reference_attention
from .windows import WindowSpec

#: backends that take a key-padding mask, in ``'auto'`` order
KEY_PADDING_BACKENDS = ('gather', 'reference')


def key_padding_reason(spec: WindowSpec) -> Optional[str]:
    """None if ``key_lengths`` can be honoured for this window, else why."""
    if spec.rank != 1:
        return (f'key_lengths on a rank-{spec.rank} map: key padding is '
                f'implemented for rank 1 only')
    axis = spec.axes[0]
    if axis.rule == 'shift' and axis.kernel == axis.length:
        return None  # global window
    if axis.rule != 'mask':
        return (f'key_lengths with border={spec.border!r}: padding equals a '
                f"shorter map only under border='mask' or a global window")
    return None


def check_key_lengths(key_lengths, batch: int, length: int) -> torch.Tensor:
    """``key_lengths`` as a long tensor ``[B]`` in ``[1, length]``, or an
    error naming the value."""
    if not isinstance(key_lengths, torch.Tensor):
        key_lengths = torch.as_tensor(key_lengths)
    if key_lengths.shape != (batch, ) or key_lengths.is_floating_point():
        raise ValueError(
            f'key_lengths: expected an integer tensor of shape ({batch},), '
            f'got {key_lengths.dtype} {tuple(key_lengths.shape)}')
    if key_lengths.numel() and (int(key_lengths.min()) < 1
                                or int(key_lengths.max()) > length):
        raise ValueError(f'key_lengths={key_lengths.tolist()}: every length '
                         f'must be in [1, {length}] (the map length)')
    return key_lengths.long()


def padded_attention_bhnd(q, k, v, spec: WindowSpec, scale: float,
                          key_lengths: torch.Tensor,
                          pos_bias: Optional[torch.Tensor] = None,
                          rel_keys: Optional[torch.Tensor] = None,
                          backend: str = 'auto',
                          dropout_p: float = 0.0) -> torch.Tensor:
    """:func:`~convattn_mm.ops.attention_bhnd` with per-sample valid lengths.

    Args:
        q, k: ``[B, H, N, D]``; v: ``[B, H, N, Dv]`` (rank-1 map, N tokens).
        key_lengths: ``[B]`` integers in ``[1, N]``.
        backend: ``'auto'``, ``'gather'`` or ``'reference'``.

    Returns:
        ``[B, H, Nq, Dv]``, zero at padded queries.
    """
    check_backend(backend)
    reason = key_padding_reason(spec)
    if reason is not None:
        raise NotImplementedError(reason)
    name = KEY_PADDING_BACKENDS[0] if backend == 'auto' else backend
    if name not in KEY_PADDING_BACKENDS:
        raise NotImplementedError(
            f'backend={backend!r} has no key-padding mask (key_lengths); '
            f'backends that have one: {sorted(KEY_PADDING_BACKENDS)}')
    B, N = q.shape[0], q.shape[2]
    lengths = check_key_lengths(key_lengths, B, N).to(q.device)
    qidx = spec.query_index(q.device)
    query_valid = qidx[None, :] < lengths[:, None]  # [B, Nq]
    if name == 'gather':
        nbr, _ = spec.neighbors(q.device)  # [Nq, Kw]
        key_pos = nbr.long()
    else:
        key_pos = torch.arange(N, device=q.device)[None, :]  # [1, N]
    key_valid = key_pos[None] < lengths[:, None, None]
    # padded queries keep their whole window (no all-masked rows, no NaN
    # gradients) and are zeroed below
    key_mask = key_valid | ~query_valid[:, :, None]
    fn = gather_attention if name == 'gather' else reference_attention
    out = fn(q, k, v, spec, scale, pos_bias, rel_keys, dropout_p=dropout_p,
             key_mask=key_mask)
    return out * query_valid[:, None, :, None].to(out.dtype)
