"""Capture the attention weights of every (chosen) :class:`RelPosAttention`
of a model.

Built on :meth:`RelPosAttention.recording`: while the context is active each
chosen layer records, per forward, the weights ``a^h_{q,δ}`` of the chosen
output queries over their windows (computed by the reference gather path, so
recording is slower than a plain forward). Outside the context nothing is
installed and the model runs at full speed.

Geometry. A layer sees a map of ``L`` positions per axis; the image has
``I`` pixels, so one map step is ``S = I / L`` image pixels (the layer's
*total stride*; the capture learns ``I`` from the model's input, or from
``image_size``). Offsets ``δ`` are reported in map steps and converted to
image pixels by ``δ·S``. An image pixel ``p`` falls in map position
``⌊p / S⌋``; the output query that holds it is ``⌊p / (S·s)⌋`` for a query
stride ``s``.

Example::

    >>> with capture_attention(model, layers='backbone.stages.2*',
    ...                        queries=8) as cap:
    ...     model(images)
    >>> rec = cap.merged('backbone.stages.2.0.mixer')
    >>> rec.weights.shape        # [rows = images x queries, heads, Kw]
"""
import contextlib
import fnmatch
import functools
import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from convattn_mm.models.layers import (AttentionRecorder, GatedConvAttention,
                                       RelPosAttention)
from convattn_mm.ops.gather import attention_weights
from convattn_mm.ops.windows import MASKED

from .measures import head_measures


def attention_layers(model):
    """``[(name, layer)]`` of every :class:`RelPosAttention` (subclasses
    included) in ``model``, in ``named_modules`` order."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, RelPosAttention)]


def select_layers(model, layers=None):
    """Pick attention layers by name.

    Args:
        layers: None (all), a name pattern (``fnmatch``, e.g.
            ``'backbone.stages.1.*'``), a list of patterns, or a list of
            ints (positions in :func:`attention_layers`).
    Returns:
        ``[(name, layer)]`` in model order.
    Raises:
        ValueError: a pattern or index that matches nothing (the message
        lists the available names).
    """
    found = attention_layers(model)
    if not found:
        raise ValueError(f'model {type(model).__name__} has no '
                         f'RelPosAttention layers to analyse')
    if layers is None:
        return found
    if isinstance(layers, (str, int)):
        layers = [layers]
    names = [n for n, _ in found]
    keep = set()
    for pat in layers:
        if isinstance(pat, bool) or not isinstance(pat, (str, int)):
            raise TypeError(f'layers entry {pat!r}: expected a name pattern '
                            f'(str) or an index (int)')
        if isinstance(pat, int):
            if not -len(found) <= pat < len(found):
                raise ValueError(f'layers index {pat} out of range: the '
                                 f'model has {len(found)} attention layers')
            keep.add(names[pat])
            continue
        hit = [n for n in names if fnmatch.fnmatchcase(n, pat)]
        if not hit:
            raise ValueError(f'layers pattern {pat!r} matches no attention '
                             f'layer; available: {names}')
        keep.update(hit)
    return [(n, m) for n, m in found if n in keep]


def pixel_to_grid(pixel, image_size, map_size, query_stride=1):
    """The output query of a layer that holds an image pixel.

    Args:
        pixel: image coordinates per axis (row, col, ...).
        image_size: image size per axis.
        map_size: the layer's input map size per axis.
        query_stride: the layer's query stride (int or per axis).
    Returns:
        tuple: output-grid coordinates ``⌊⌊p·L/I⌋ / s⌋``, clamped to the
        grid.
    """
    rank = len(map_size)
    if len(pixel) != rank or len(image_size) != rank:
        raise ValueError(f'pixel={tuple(pixel)} and image_size='
                         f'{tuple(image_size)} need {rank} entries (the '
                         f'map {tuple(map_size)})')
    stride = (query_stride, ) * rank if isinstance(query_stride,
                                                   int) else query_stride
    out = []
    for p, img, L, s in zip(pixel, image_size, map_size, stride):
        if not 0 <= p < img:
            raise ValueError(f'pixel={tuple(pixel)} is outside the image '
                             f'{tuple(image_size)}')
        i = min(int(p * L // img), L - 1)
        out.append(min(i // s, -(-L // s) - 1))
    return tuple(out)


def layer_stride(image_size, map_size):
    """Image pixels per map step per axis (``I / L``), floats."""
    return tuple(float(i) / float(L) for i, L in zip(image_size, map_size))


@dataclass
class LayerRecord:
    """The captured attention of one layer (rows: image × query).

    Attributes:
        weights: ``[R, H, Kw]`` float32 (CPU); 0 on masked slots; rows sum
            to 1 (zero-padded slots of the ``'zeros'`` border included).
        valid: ``[R, Kw]`` bool, False on masked slots.
        table: ``[R, Kw]`` long, flat index into ``table_shape``.
        keys: ``[R, Kw]`` long, flat key index in the layer's map (-1
            masked, -2 zero-padded).
        query_pos: ``[R, rank]`` long, the query's position in the layer's
            input map (output coordinate × query stride).
        image_index: ``[R]`` long, the image (counted over forwards).
        table_offsets: ``[T, rank]`` long, δ of each table entry (map steps).
        table_shape, in_shape, out_shape: the window geometry.
        stride: image pixels per map step, per axis (None when the image
            size is unknown: distances are then in map steps).
    """
    weights: torch.Tensor
    valid: torch.Tensor
    table: torch.Tensor
    keys: torch.Tensor
    query_pos: torch.Tensor
    image_index: torch.Tensor
    table_offsets: torch.Tensor
    table_shape: Tuple[int, ...]
    in_shape: Tuple[int, ...]
    out_shape: Tuple[int, ...]
    stride: Optional[Tuple[float, ...]]

    @property
    def num_heads(self):
        return self.weights.shape[1]

    def offsets_px(self):
        """``[T, rank]`` float: table offsets in image pixels (map steps
        when the stride is unknown)."""
        s = torch.tensor(self.stride or (1.0, ) * len(self.table_shape))
        return self.table_offsets.float() * s

    def query_pixel(self):
        """``[R, rank]`` float: each query's position in image pixels."""
        s = torch.tensor(self.stride or (1.0, ) * len(self.table_shape))
        return self.query_pos.float() * s

    def key_coords(self):
        """``[R, Kw, rank]`` long: key positions in the layer's map (the
        query position + δ; may lie outside the map on border slots)."""
        return self.query_pos[:, None, :] + self.table_offsets[self.table]


class AttentionCapture:
    """What :func:`capture_attention` yields: per-layer records.

    Attributes:
        layers: ``{name: layer}``.
        records: ``{name: [LayerRecord, ...]}`` one per forward.
        image_size: the last input's spatial size (or the one given).
    """

    def __init__(self, layers, queries, image_size):
        self.layers = dict(layers)
        self.queries = queries
        self.image_size = None if image_size is None else tuple(image_size)
        self.records = {n: [] for n in self.layers}
        self._images_seen = {n: 0 for n in self.layers}
        self._map_size = {}
        self._gated_input = {}

    # ------------------------------------------------------------ queries
    def _resolve(self, name, layer, spec):
        """Output-grid queries of ``layer`` for this forward (None: all)."""
        q = self.queries
        if isinstance(q, dict):
            q = q.get(name)
        out = spec.out_shape
        if q is None:
            return None
        if isinstance(q, int) and not isinstance(q, bool):
            if q < 1:
                raise ValueError(f'queries={q}: an int asks for up to q '
                                 f'evenly spaced queries per axis (>= 1)')
            axes = [_spaced(min(q, n), n) for n in out]
            grid = torch.cartesian_prod(*[torch.tensor(a) for a in axes])
            return [tuple(int(v) for v in row.reshape(-1)) for row in grid]
        if isinstance(q, (list, tuple)):
            if self.image_size is None:
                raise ValueError('queries given as image pixels need the '
                                 'image size: pass image_size= or call the '
                                 'model on an image tensor [B, C, *spatial]')
            size = self._map_size.get(name, spec.in_shape)
            return [pixel_to_grid(p, self.image_size, size,
                                  layer.query_stride) for p in q]
        raise TypeError(f'queries={q!r}: expected None (all), an int (a '
                        f'grid of q per axis), a list of image pixels, or a '
                        f'dict {{layer name: one of those}}')

    def _record(self, name, layer, rec, q, k, spec, scale, pos_bias,
                rel_keys):
        rec.queries = self._resolve(name, layer, spec)
        n_before = len(rec.records)
        # the recorder's own computation of the weights
        AttentionRecorder.record(rec, q, k, spec, scale, pos_bias, rel_keys)
        raw = rec.records.pop(n_before)
        weights = raw['weights']
        if isinstance(layer, GatedConvAttention) and name in \
                self._gated_input:
            weights = self._gated_weights(name, layer, spec, weights, rec)
        self._store(name, layer, spec, raw, weights)

    def _gated_weights(self, name, layer, spec, position, rec):
        """ConViT mixture ``g·a_pos + (1-g)·a_content`` of a gated layer
        (its recorder sees only the position branch)."""
        x = self._gated_input.pop(name)
        tokens = x if layer.layout == 'channels_last' else x.movedim(1, -1)
        spatial = tuple(tokens.shape[1:-1])
        qc, kc, _ = layer.project_qkv(tokens)
        _, padded = layer.window(spatial)
        if padded != spatial:
            qc, kc = (layer.pad_tokens(t, spatial, padded) for t in (qc, kc))
        select = None
        if rec.queries is not None:
            select = torch.tensor(
                [_flat(c, spec.out_shape) for c in rec.queries],
                device=qc.device)
        with torch.no_grad():
            content = attention_weights(qc.detach(), kc.detach(), spec,
                                        layer.scale, None, None,
                                        select)['weights']
        g = torch.sigmoid(layer.gate.detach()).to(position.dtype)
        g = g.to(position.device)[None, :, None, None]
        return position * g + content.to(position.dtype) * (1 - g)

    def _store(self, name, layer, spec, raw, weights):
        B, H, S, Kw = weights.shape
        keys = raw['keys'].long().cpu()
        table = raw['table'].long().cpu()
        if raw['queries'] is None:
            qpos = _grid_positions(spec)
        else:
            strides = [a.stride for a in spec.axes]
            qpos = torch.tensor([[c * s for c, s in zip(qc, strides)]
                                 for qc in raw['queries']], dtype=torch.long)
        size = self._map_size.get(name, spec.in_shape)
        stride = None if self.image_size is None else layer_stride(
            self.image_size, size)
        first = self._images_seen[name]
        self._images_seen[name] += B
        self.records[name].append(
            LayerRecord(
                weights=weights.detach().float().cpu().permute(
                    0, 2, 1, 3).reshape(B * S, H, Kw),
                valid=(keys != MASKED).repeat(B, 1),
                table=table.repeat(B, 1),
                keys=keys.repeat(B, 1),
                query_pos=qpos.repeat(B, 1),
                image_index=torch.arange(first, first + B).repeat_interleave(
                    S),
                table_offsets=spec.table_offsets().long().cpu(),
                table_shape=tuple(spec.table_shape),
                in_shape=tuple(spec.in_shape),
                out_shape=tuple(spec.out_shape),
                stride=stride))

    # ------------------------------------------------------------- results
    def merged(self, name):
        """All forwards of one layer as one :class:`LayerRecord`.

        Raises:
            KeyError: an unknown layer; ValueError: no forward ran, or the
            forwards saw windows of different shapes (images of different
            sizes: capture them separately).
        """
        if name not in self.records:
            raise KeyError(f'layer {name!r} was not captured; captured: '
                           f'{list(self.records)}')
        recs = self.records[name]
        if not recs:
            raise ValueError(f'layer {name!r} recorded nothing: run a '
                             f'forward inside the capture context')
        first = recs[0]
        for r in recs[1:]:
            if (r.table_shape, r.in_shape) != (first.table_shape,
                                               first.in_shape):
                raise ValueError(
                    f'layer {name!r} saw maps {first.in_shape} and '
                    f'{r.in_shape}: merge captures of one input size only')
        if len(recs) == 1:
            return first
        cat = {
            f: torch.cat([getattr(r, f) for r in recs])
            for f in ('weights', 'valid', 'table', 'keys', 'query_pos',
                      'image_index')
        }
        return LayerRecord(table_offsets=first.table_offsets,
                           table_shape=first.table_shape,
                           in_shape=first.in_shape,
                           out_shape=first.out_shape, stride=first.stride,
                           **cat)

    def measures(self, **kwargs):
        """``{name: measures}`` (:func:`convattn_mm.analysis.head_measures`)
        of every layer that recorded something."""
        return {
            n: head_measures(self.merged(n), **kwargs)
            for n in self.records if self.records[n]
        }

    def clear(self):
        for n in self.records:
            self.records[n] = []
            self._images_seen[n] = 0


@contextlib.contextmanager
def capture_attention(model, layers=None, queries=None, image_size=None):
    """Record attention weights of chosen layers while active.

    Args:
        model (nn.Module): any module holding :class:`RelPosAttention`
            layers (backbones, classifiers, conv-converted networks).
        layers: which layers (see :func:`select_layers`); default all.
        queries: None (every query: the measures' default), an int ``n``
            (up to ``n`` evenly spaced queries per axis of each layer's
            grid), a list of image pixels (mapped to each layer's grid by
            :func:`pixel_to_grid`), or ``{layer name: one of those}``.
        image_size: the input's spatial size; default: read from the first
            tensor argument of each ``model(...)`` call (its last ``rank``
            dims).
    Yields:
        :class:`AttentionCapture`.

    :class:`GatedConvAttention` layers are recorded as their actual mixture
    ``σ(λ)·a_position + (1-σ(λ))·a_content`` when they are called as modules.
    """
    chosen = select_layers(model, layers)
    cap = AttentionCapture(chosen, queries, image_size)
    rank = chosen[0][1].rank
    with contextlib.ExitStack() as stack:
        if image_size is None:
            handle = model.register_forward_pre_hook(
                functools.partial(_grab_image_size, cap, rank),
                with_kwargs=True)
            stack.callback(handle.remove)
        for name, layer in chosen:
            stack.enter_context(
                layer.recording(recorder=_CaptureRecorder(cap, name, layer)))
            handle = layer.register_forward_pre_hook(
                functools.partial(_grab_map_size, cap, name))
            stack.callback(handle.remove)
        yield cap


class _CaptureRecorder(AttentionRecorder):
    """The recorder a captured layer writes to: it hands each record to
    :meth:`AttentionCapture._record` with the layer's name."""

    def __init__(self, cap, name, layer):
        super().__init__(None)
        self.cap, self.name, self.layer = cap, name, layer

    def record(self, q, k, spec, scale, pos_bias, rel_keys):
        self.cap._record(self.name, self.layer, self, q, k, spec, scale,
                         pos_bias, rel_keys)


def _grab_image_size(cap, rank, module, args, kwargs):
    for value in list(args) + list(kwargs.values()):
        if isinstance(value, torch.Tensor) and value.dim() >= rank + 1:
            cap.image_size = tuple(value.shape[-rank:])
            return
        if isinstance(value, (list, tuple)) and value and isinstance(
                value[0], torch.Tensor) and value[0].dim() >= rank:
            cap.image_size = tuple(value[0].shape[-rank:])
            return


def _grab_map_size(cap, name, layer, args):
    """The real map size (before ``small_map='pad'``) when the layer is
    called as a module; stash a gated layer's input for its content
    branch."""
    if not args or not isinstance(args[0], torch.Tensor):
        return
    x = args[0]
    first = getattr(layer, 'layout', 'channels_last') == 'channels_first'
    cap._map_size[name] = tuple(x.shape[2:] if first else x.shape[1:-1])
    if isinstance(layer, GatedConvAttention):
        cap._gated_input[name] = x.detach()


def _spaced(m, n):
    """``m`` evenly spaced positions in ``[0, n)`` (the centre for 1)."""
    if m == 1:
        return [n // 2]
    return sorted({int(round(i * (n - 1) / (m - 1))) for i in range(m)})


def _grid_positions(spec):
    """``[Nq, rank]`` input-map positions of every output query."""
    axes = [torch.arange(0, a.length, a.stride) for a in spec.axes]
    mesh = torch.meshgrid(*axes, indexing='ij')
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1).long()


def _flat(coord, shape):
    return int(sum(c * math.prod(shape[i + 1:]) for i, c in enumerate(coord)))


__all__ = [
    'capture_attention', 'AttentionCapture', 'LayerRecord',
    'attention_layers', 'select_layers', 'pixel_to_grid', 'layer_stride'
]
