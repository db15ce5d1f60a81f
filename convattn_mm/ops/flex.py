"""The ``'flex'`` backend: ``flex_attention`` *compiled*, with the window as a
block-sparse mask over spatial tiles and the position terms in ``score_mod``.

Memory grows linearly with tokens: the op never runs ``flex_attention``
eagerly (PyTorch's eager fallback materialises the full ``N x N`` scores).

* **Tiles.** Tokens are reordered so that each block of 128 consecutive
  tokens (flex's block size) is one spatial tile, of the power-of-two shape
  (``8 x 16``, ``4 x 32``, ``4 x 4 x 8``, ...) that leaves the fewest
  (query tile, key tile) pairs for this window and map; with dilation ``d``
  a tile holds every ``d``-th token, so a dilated window stays compact
  (NATTEN's flex path permutes tokens the same way). Row-major order would
  make a block of a fraction of a wide row need key blocks spanning the
  whole window height.
* **Block mask.** Built per window and device from per-axis tile reachability
  (which key tiles a query tile's windows touch, and which pairs are fully
  inside), ``O((N/128)^2)`` small integers, never an ``N x N`` mask; cached.
* **Padding and size buckets.** Each axis is padded up to a whole number of
  tiles (queries and keys beyond the map are masked out; ``border='zeros'``
  keys point at a zero token), so every map size in one bucket of
  ``tile x dilation`` pixels per axis reuses one compiled kernel.
* **Compiled per call signature.** One compiled function per signature
  (bucketed shapes, dtypes, rank, which terms, grad mode), each with its own
  code object so that dynamo's per-code recompile limit (8 in torch 2.14)
  can never silently drop a call back to eager flex; an LRU keeps at most
  :data:`MAX_COMPILED` of them. Dynamic shapes are not used: in torch 2.14.1
  inductor's CPU flex template fails to compile with symbolic sizes.
* ``score_mod`` is evaluated at masked-out positions inside partial blocks,
  so every table index is clamped into range.

Training needs CUDA (torch: "FlexAttention does not support backward on
CPU"); on the CPU the compiled path runs forward (inference) only.
"""
import collections
import functools
import math
import shutil
import threading
import types

import torch

from .windows import WindowSpec

BLOCK = 128
#: compiled functions kept (one per call signature), least recently used
#: dropped first
MAX_COMPILED = 16


def unavailable_reason(device_type: str):
    """None if compiled flex can run on ``device_type``, else why not."""
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:
        return 'torch.nn.attention.flex_attention is not available'
    if device_type == 'cuda':
        from torch.utils._triton import has_triton, has_triton_package
        if not has_triton_package():
            return ('Triton is not installed: torch.compile cannot build the '
                    'flex kernel on CUDA')
        if not has_triton():
            return ('Triton finds no CUDA device it supports: torch.compile '
                    'cannot build the flex kernel')
        return None
    if device_type == 'cpu':
        if shutil.which('g++') is None and shutil.which('c++') is None:
            return ('no C++ compiler: torch.compile cannot build the flex '
                    'kernel on the CPU')
        return None
    return f'device {device_type!r}: flex runs on CUDA and the CPU only'


# ------------------------------------------------------------------ layout
def _axis_lookup(a, pad):
    """``[Lq, L + 2*pad]`` long: table index of (query, key) or -1."""
    key, valid, table = a.neighbors()
    if a.rule == 'zeros':
        valid = torch.ones_like(valid)
    lq = key.shape[0]
    out = torch.full((lq, a.length + 2 * pad), -1, dtype=torch.long)
    rows = torch.arange(lq)[:, None].expand_as(key)
    out[rows[valid], key[valid] + pad] = table[valid]
    return out


def _tiling(length, tile, group):
    """Bucketed length, and per coordinate its segment (tile) and in-tile
    index, for an axis of ``length`` split into ``group`` residue classes."""
    span = tile * group
    padded = -(-length // span) * span
    x = torch.arange(padded)
    n_tiles = padded // span
    seg = (x % group) * n_tiles + (x // group) // tile
    return padded, seg, (x // group) % tile, n_tiles * group


class _Side:
    """Token order of one side (queries or keys) over the bucketed grid."""

    def __init__(self, lengths, tiles, groups, origin=None, real=None):
        origin = origin or (0, ) * len(lengths)
        real = real or lengths
        parts = [_tiling(L, t, g) for L, t, g in zip(lengths, tiles, groups)]
        self.padded = tuple(p[0] for p in parts)
        self.n_segs = tuple(p[3] for p in parts)
        segs = [p[1] for p in parts]
        inner = [p[2] for p in parts]
        mesh = torch.meshgrid(*[torch.arange(p) for p in self.padded],
                              indexing='ij')
        seg_flat = torch.zeros_like(mesh[0])
        in_flat = torch.zeros_like(mesh[0])
        for a in range(len(lengths)):
            seg_flat = seg_flat * self.n_segs[a] + segs[a][mesh[a]]
            in_flat = in_flat * tiles[a] + inner[a][mesh[a]]
        pos = (seg_flat * math.prod(tiles) + in_flat).reshape(-1)
        self.numel = pos.numel()
        coords = [m.reshape(-1) for m in mesh]
        # permuted position -> coordinate along each axis
        self.coords = [torch.empty_like(c) for c in coords]
        for a, c in enumerate(coords):
            self.coords[a][pos] = c
        # permuted position -> flat index of a real token (the map starts at
        # ``origin`` and has ``real`` tokens per axis), else -1
        inside = torch.ones_like(pos, dtype=torch.bool)
        flat = torch.zeros_like(pos)
        for a, c in enumerate(coords):
            c = c - origin[a]
            inside &= (c >= 0) & (c < real[a])
            flat = flat * real[a] + c.clamp(0, real[a] - 1)
        self.source = torch.full_like(pos, -1)
        self.source[pos] = torch.where(inside, flat, -1)
        self.position = pos[inside]  # real token (row-major) -> position
        self.segs = segs


def _axis_geometry(spec, pads):
    """Per axis: the lookup ``[Lq, Lk]``, query and key residue groups."""
    out = []
    for a, p in zip(spec.axes, pads):
        out.append((_axis_lookup(a, p), a.dilation if a.stride == 1 else 1,
                    a.dilation))
    return out


def _axis_blocks(lut, tile, q_group, k_group):
    """Bucketed lookup and ``(query segment, key segment)`` pair counts of
    one axis for a tile length."""
    lq, lk = lut.shape
    pq, seg_q = _tiling(lq, tile, q_group)[:2]
    pk, seg_k = _tiling(lk, tile, k_group)[:2]
    padded = torch.full((pq, pk), -1, dtype=torch.long)
    padded[:lq, :lk] = lut
    count = torch.zeros(int(seg_q.max()) + 1, int(seg_k.max()) + 1,
                        dtype=torch.long)
    count.index_put_((seg_q[:, None].expand_as(padded),
                      seg_k[None, :].expand_as(padded)),
                     (padded >= 0).long(), accumulate=True)
    return padded, count


def _best_tiles(geometry):
    """The tile shape (powers of two, product :data:`BLOCK`) with the
    fewest active (query tile, key tile) pairs: per axis the count is
    independent of the other axes, so the total is their product."""
    rank = len(geometry)
    exps = range(int(math.log2(BLOCK)) + 1)
    cost = [{e: int((_axis_blocks(lut, 2**e, gq, gk)[1] > 0).sum())
             for e in exps} for lut, gq, gk in geometry]
    best = None
    for combo in _compositions(int(math.log2(BLOCK)), rank):
        total = math.prod(c[e] for c, e in zip(cost, combo))
        if best is None or total < best[0]:
            best = (total, tuple(2**e for e in combo))
    return best[1]


def _compositions(total, parts):
    if parts == 1:
        yield (total, )
        return
    for first in range(total + 1):
        for rest in _compositions(total - first, parts - 1):
            yield (first, ) + rest


@functools.lru_cache(maxsize=64)
def _layout(spec: WindowSpec, device: str):
    """Everything about a window that does not depend on tensor values:
    token orders, per-axis lookups and the block mask's indices."""
    pads = [(a.kernel - 1) // 2 * a.dilation if a.rule == 'zeros' else 0
            for a in spec.axes]
    geometry = _axis_geometry(spec, pads)
    tiles = _best_tiles(geometry)
    qside = _Side(spec.out_shape, tiles, [g[1] for g in geometry])
    k_len = [a.length + 2 * p for a, p in zip(spec.axes, pads)]
    kside = _Side(k_len, tiles, [g[2] for g in geometry], pads,
                  spec.in_shape)
    luts, reach, full = [], None, None
    for (lut, gq, gk), t in zip(geometry, tiles):
        lut, count = _axis_blocks(lut, t, gq, gk)
        luts.append(lut)
        r_a, f_a = count > 0, count == t * t
        if reach is None:
            reach, full = r_a, f_a
        else:
            nq, nk = reach.shape
            reach = (reach[:, None, :, None] & r_a[None, :, None, :]).reshape(
                nq * r_a.shape[0], nk * r_a.shape[1])
            full = (full[:, None, :, None] & f_a[None, :, None, :]).reshape(
                nq * f_a.shape[0], nk * f_a.shape[1])
    partial = reach & ~full

    def blocks(mask):
        num = mask.sum(-1).to(torch.int32)
        idx = torch.sort(mask.to(torch.int8), dim=-1, descending=True,
                         stable=True).indices.to(torch.int32)
        return num[None, None].contiguous(), idx[None, None].contiguous()

    out = dict(
        q_source=qside.source, q_position=qside.position,
        k_source=kside.source, q_coords=qside.coords, k_coords=kside.coords,
        luts=luts, table_sizes=spec.table_shape,
        blocks=blocks(partial) + blocks(full),
        n_q=qside.numel, n_k=kside.numel, tiles=tiles,
        active_blocks=int(reach.sum()))
    return {
        k: (_to(v, device) if k not in ('table_sizes', 'n_q', 'n_k', 'tiles',
                                        'active_blocks') else v)
        for k, v in out.items()
    }


def _to(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    return type(value)(_to(v, device) for v in value)


def active_blocks(spec: WindowSpec) -> int:
    """(query tile, key tile) pairs of 128 x 128 scores the kernel visits
    for this window (the work; dense attention would visit all)."""
    return _layout(spec, 'cpu')['active_blocks']


def tile_shape(spec: WindowSpec):
    """The tile shape chosen for this window and map."""
    return _layout(spec, 'cpu')['tiles']


# ----------------------------------------------------------------- compiled
def _flex_core(q, k, v, q_coords, k_coords, luts, table_sizes, bias, qr,
               blocks, n_q, n_k, scale):
    """The compiled part: the block mask and both mods are built inside, so
    they close over this call's tensors (not over Python objects that change
    from call to call)."""
    from torch.nn.attention.flex_attention import BlockMask, flex_attention
    n_table = math.prod(table_sizes)

    def table_index(q_idx, kv_idx):
        q_idx = q_idx.clamp(0, n_q - 1)
        kv_idx = kv_idx.clamp(0, n_k - 1)
        t = torch.zeros_like(q_idx)
        ok = torch.ones_like(q_idx, dtype=torch.bool)
        for lut, qc, kc, n in zip(luts, q_coords, k_coords, table_sizes):
            e = lut[qc[q_idx], kc[kv_idx]]
            ok = ok & (e >= 0)
            t = t * n + e.clamp(min=0)
        return t.clamp(0, n_table - 1), ok, q_idx

    def mask_mod(b, h, q_idx, kv_idx):
        return table_index(q_idx, kv_idx)[1]

    def score_mod(score, b, h, q_idx, kv_idx):
        t, _, q_idx = table_index(q_idx, kv_idx)
        if bias is not None:
            score = score + bias[h, t]
        if qr is not None:
            score = score + qr[b, h, q_idx, t]
        return score

    kv_num, kv_idx, full_num, full_idx = blocks
    block_mask = BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx,
                                          BLOCK_SIZE=BLOCK, mask_mod=mask_mod,
                                          seq_lengths=(n_q, n_k))
    return flex_attention(q, k, v, score_mod=score_mod, block_mask=block_mask,
                          scale=scale)


_compiled = collections.OrderedDict()
_lock = threading.Lock()
compile_count = 0  # functions compiled so far (for tests and benchmarks)


def _signature(*args):
    """Everything dynamo would guard on, as a hashable key."""
    out = [torch.is_grad_enabled()]
    for x in args:
        if isinstance(x, torch.Tensor):
            out.append((tuple(x.shape), x.dtype, x.device.type,
                        x.requires_grad))
        elif isinstance(x, (list, tuple)):
            out.append(_signature(*x))
        else:
            out.append(x)
    for dev in ('cpu', 'cuda'):
        if torch.is_autocast_enabled(dev):
            out.append((dev, torch.get_autocast_dtype(dev)))
    return tuple(out)


def _compiled_for(signature):
    """The compiled core for one call signature (LRU, own code object)."""
    global compile_count
    with _lock:
        fn = _compiled.get(signature)
        if fn is not None:
            _compiled.move_to_end(signature)
            return fn
        compile_count += 1
        code = _flex_core.__code__.replace(
            co_name=f'_flex_core_{compile_count}')
        fresh = types.FunctionType(code, _flex_core.__globals__, code.co_name,
                                   _flex_core.__defaults__,
                                   _flex_core.__closure__)
        fn = torch.compile(fresh, dynamic=False, fullgraph=True)
        _compiled[signature] = fn
        while len(_compiled) > MAX_COMPILED:
            _compiled.popitem(last=False)
        return fn


def _gather_tokens(x, source):
    """``x [B, H, N, D]`` -> ``[B, H, len(source), D]``; -1 -> zero token."""
    zero = x.new_zeros(x.shape[:2] + (1, x.shape[-1]))
    x = torch.cat([x, zero], 2)
    return x[:, :, torch.where(source >= 0, source, x.shape[2] - 1)]


def flex_attention_op(q, k, v, spec: WindowSpec, scale, pos_bias=None,
                      rel_keys=None):
    """Same contract as :func:`~convattn_mm.ops.reference.reference_attention`
    (``[B, H, N, D]`` layout); runs compiled flex attention."""
    lay = _layout(spec, str(q.device))
    if spec.strided:
        q = q[:, :, spec.query_index(q.device)]
    dv = v.shape[-1]
    # flex wants q/k/v of one power-of-two head dim (>= 16 for Triton): pad
    # with zero channels, which change no dot product and no output channel
    d = max(16, 1 << (max(q.shape[-1], dv) - 1).bit_length())
    if q.shape[-1] < d:
        q, k = (torch.nn.functional.pad(t, [0, d - t.shape[-1]])
                for t in (q, k))
    if dv < d:
        v = torch.nn.functional.pad(v, [0, d - dv])
    dtype = q.dtype
    qp = _gather_tokens(q, lay['q_source'])
    kp = _gather_tokens(k, lay['k_source'])
    vp = _gather_tokens(v, lay['k_source'])
    qr = None
    if rel_keys is not None:
        qr = torch.einsum('bhqd,htd->bhqt', qp[..., :rel_keys.shape[-1]],
                          rel_keys.to(dtype)) * scale
    bias = None if pos_bias is None else pos_bias.to(dtype)
    args = (qp, kp, vp, lay['q_coords'], lay['k_coords'], lay['luts'],
            lay['table_sizes'], bias, qr, lay['blocks'], lay['n_q'],
            lay['n_k'], float(scale))
    out = _compiled_for(_signature(*args))(*args)
    return out[:, :, lay['q_position'], :dv]
