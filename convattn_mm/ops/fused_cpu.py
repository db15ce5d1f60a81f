"""The ``'fused_cpu'`` backend: a small C++ kernel (``csrc/``) loaded with
ctypes, forward and backward, every border rule, rank, dilation, query stride,
bias table and relative keys.

The library is compiled once (about 10 s of one core with ``c++``; ``make
setup`` does it ahead of time) into a cache folder keyed by the source hash:
``$CONVATTN_MM_CACHE`` or ``~/.cache/convattn_mm``. When it is not there
yet, importing this module starts the build in a background thread, so it
runs while the model is built and the data loaded; a first call before it
ends waits for the rest (``CONVATTN_MM_NO_PREBUILD=1`` builds on first use
instead). Without a compiler the backend reports itself unavailable and
``backend='auto'`` uses ``'gather'``.
"""
import ctypes
import hashlib
import math
import numbers
import os
import os.path as osp
import platform
import shutil
import subprocess
import tempfile
import threading

import torch

from .windows import WindowSpec

_SRC = osp.join(osp.dirname(__file__), 'csrc', 'neighborhood_cpu.cpp')
_FLAGS = ['-O3', '-march=native', '-fopenmp-simd', '-std=c++17', '-shared',
          '-fPIC', '-pthread']


def _flags():
    """Compiler flags; ``$CONVATTN_MM_CXXFLAGS`` adds more (e.g. a
    sanitizer build for debugging)."""
    return _FLAGS + os.environ.get('CONVATTN_MM_CXXFLAGS', '').split()
_lock = threading.Lock()
_lib = None
_error = None


def cache_dir() -> str:
    return os.environ.get('CONVATTN_MM_CACHE',
                          osp.join(osp.expanduser('~'), '.cache',
                                   'convattn_mm'))


def _cpu_signature() -> bytes:
    """The CPU's instruction-set flags: ``-march=native`` builds are only
    valid on the CPU they were built for, so they key the cache."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return line.encode()
    except OSError:
        pass
    return platform.machine().encode() + platform.processor().encode()


def library_path() -> str:
    with open(_SRC, 'rb') as f:
        digest = hashlib.sha1(f.read() + ' '.join(_flags()).encode() +
                              _cpu_signature())
    return osp.join(cache_dir(),
                    f'neighborhood_cpu_{digest.hexdigest()[:12]}.so')


def build(verbose: bool = False) -> str:
    """Compile the kernel into the cache (atomic; a no-op when present)."""
    path = library_path()
    if osp.exists(path):
        return path
    cxx = os.environ.get('CXX') or shutil.which('c++') or shutil.which('g++')
    if cxx is None:
        raise RuntimeError('no C++ compiler found (set CXX)')
    os.makedirs(osp.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix='.so', dir=osp.dirname(path))
    os.close(fd)
    cmd = [cxx, *_flags(), _SRC, '-o', tmp]
    if verbose:
        print(' '.join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        os.unlink(tmp)
        raise RuntimeError(f'compiling {_SRC} failed:\n{proc.stderr[-2000:]}')
    os.replace(tmp, path)
    return path


def load():
    """The loaded library, or None (see :func:`unavailable_reason`)."""
    global _lib, _error
    if _lib is not None or _error is not None:
        return _lib
    with _lock:
        if _lib is None and _error is None:
            try:
                lib = ctypes.CDLL(build())
                for name in ('cam_forward_f32', 'cam_forward_f64',
                             'cam_backward_f32', 'cam_backward_f64'):
                    getattr(lib, name).restype = None
                _lib = lib
            except Exception as e:  # no compiler, read-only cache, ...
                _error = str(e)
    return _lib


def _after_fork_in_child():
    """A child forked while the parent's build thread held the lock gets a
    free lock (and builds or loads on its own first use)."""
    global _lock
    _lock = threading.Lock()


def prebuild():
    """Start :func:`load` in a background thread when the library is not
    in the cache yet; returns the thread, or None when there is nothing to
    build."""
    if _lib is not None or _error is not None or osp.exists(library_path()):
        return None
    thread = threading.Thread(target=load, name='convattn_mm-kernel-build',
                              daemon=True)
    thread.start()
    return thread


def unavailable_reason():
    load()
    return _error


_P = ctypes.c_void_p


def _ptr(t):
    return _P(t.data_ptr()) if t is not None else _P(0)


def _i(x):
    return ctypes.c_int64(x)


def _strides(*ts):
    """(b, h, n) element strides of [B, H, N, D] tensors, as an int64 array
    (kept alive by the caller)."""
    flat = [s for t in ts for s in t.stride()[:3]]
    return (ctypes.c_int64 * len(flat))(*flat)


def _rowmajor(t):
    """``t`` itself when its last dim is contiguous, else a copy."""
    return t if t.stride(-1) == 1 or t.shape[-1] == 1 else t.contiguous()


def _table_size(bias, rel_keys):
    return bias.shape[-1] if bias is not None else (
        rel_keys.shape[1] if rel_keys is not None else 0)


def _kernel_forward(q, k, v, bias, rel_keys, nbr, tbl, scale):
    """Run the forward kernel: ``out [B, H, Nq, Dv]`` (token-major memory)
    and the probabilities ``P [B, H, Nq, Kw]``."""
    lib = load()
    B, H, Nq, D = q.shape
    Nk, Dv, Kw = k.shape[2], v.shape[3], nbr.shape[1]
    T = _table_size(bias, rel_keys)
    out = q.new_empty(B, Nq, H, Dv).transpose(1, 2)
    P = q.new_empty(B, H, Nq, Kw)
    fn = lib.cam_forward_f64 if q.dtype == torch.float64 else \
        lib.cam_forward_f32
    fn(_ptr(q), _ptr(k), _ptr(v), _ptr(bias), _ptr(rel_keys), _ptr(nbr),
       _ptr(tbl), _i(B), _i(H), _i(Nq), _i(Nk), _i(Kw), _i(D), _i(Dv),
       _i(T), ctypes.c_double(scale), _strides(q, k, v, out), _ptr(out),
       _ptr(P), ctypes.c_int(torch.get_num_threads()))
    return out, P


def _kernel_backward(q, k, v, bias, rel_keys, nbr, tbl, scale, P, dout, dq,
                     dk, dv):
    """Run the backward kernel into ``dq`` (written), ``dk``, ``dv``
    (zeroed and accumulated by the kernel; any strides); returns ``dbias
    [H, T]`` and ``drk [H, T, D]`` (None where the term is absent)."""
    lib = load()
    B, H, Nq, D = q.shape
    Nk, Dv, Kw = k.shape[2], v.shape[3], nbr.shape[1]
    T = _table_size(bias, rel_keys)
    dbias = q.new_empty(B, H, T) if bias is not None else None
    drk = q.new_empty(B, H, T, D) if rel_keys is not None else None
    fn = lib.cam_backward_f64 if q.dtype == torch.float64 else \
        lib.cam_backward_f32
    fn(_ptr(q), _ptr(k), _ptr(v), _ptr(rel_keys), _ptr(nbr), _ptr(tbl),
       _i(B), _i(H), _i(Nq), _i(Nk), _i(Kw), _i(D), _i(Dv), _i(T),
       ctypes.c_double(scale), _strides(q, k, v, dout, dq, dk, dv), _ptr(P),
       _ptr(dout), _ptr(dq), _ptr(dk), _ptr(dv), _ptr(dbias), _ptr(drk),
       ctypes.c_int(torch.get_num_threads()))
    return (None if dbias is None else dbias.sum(0),
            None if drk is None else drk.sum(0))


class _FusedNA(torch.autograd.Function):
    """q, k, v: [B, H, N, D] with any (b, h, n) strides and a contiguous last
    dim. The output is [B, H, Nq, Dv] stored token-major ([B, Nq, H, Dv]
    memory), so a following ``transpose(1, 2).reshape`` is free."""

    @staticmethod
    def forward(ctx, q, k, v, bias, rel_keys, nbr, tbl, scale):
        out, P = _kernel_forward(q, k, v, bias, rel_keys, nbr, tbl, scale)
        ctx.save_for_backward(q, k, v, bias, rel_keys, nbr, tbl, P)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, bias, rel_keys, nbr, tbl, P = ctx.saved_tensors
        dq, dk, dv = q.new_empty(q.shape), torch.empty_like(k), \
            torch.empty_like(v)
        dbias, drk = _kernel_backward(q, k, v, bias, rel_keys, nbr, tbl,
                                      ctx.scale, P, _rowmajor(dout), dq, dk,
                                      dv)
        return dq, dk, dv, dbias, drk, None, None, None


def _split_qkv(qkv):
    """Views ``q, k, v [B, H, N, D]`` of ``qkv [B, N, 3, H, D]``."""
    return (qkv[:, :, i].transpose(1, 2) for i in range(3))


class _FusedNAQKV(torch.autograd.Function):
    """The q/k/v-fused entry: reads ``qkv [B, N, 3, H, D]`` (a projection's
    output, viewed) in place and writes its gradient in that layout, so no
    ``unbind``/``stack`` or transpose copies on either pass."""

    @staticmethod
    def forward(ctx, qkv, bias, rel_keys, nbr, tbl, scale):
        q, k, v = _split_qkv(qkv)
        out, P = _kernel_forward(q, k, v, bias, rel_keys, nbr, tbl, scale)
        ctx.save_for_backward(qkv, bias, rel_keys, nbr, tbl, P)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, dout):
        qkv, bias, rel_keys, nbr, tbl, P = ctx.saved_tensors
        dqkv = torch.empty_like(qkv, memory_format=torch.contiguous_format)
        dbias, drk = _kernel_backward(*_split_qkv(qkv), bias, rel_keys, nbr,
                                      tbl, ctx.scale, P, _rowmajor(dout),
                                      *_split_qkv(dqkv))
        return dqkv, dbias, drk, None, None, None


def check_call(q, k, v, spec: WindowSpec, scale, pos_bias=None,
               rel_keys=None):
    """The public boundary of the C++ kernel: every size it indexes with
    and every type it reads, checked before any pointer is handed over.

    Raises:
        TypeError: a non-tensor, a non-float dtype, a ``scale`` that is not
            a real number; ValueError: a shape that does not match the
            window or the other tensors, a tensor off the CPU.
    """
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise TypeError(f'scale={scale!r}: expected a real number (float)')
    if not math.isfinite(float(scale)):
        raise ValueError(f'scale={scale!r}: expected a finite number')
    named = (('q', q), ('k', k), ('v', v), ('pos_bias', pos_bias),
             ('rel_keys', rel_keys))
    for name, t in named:
        if t is None and name in ('pos_bias', 'rel_keys'):
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f'{name} must be a torch.Tensor, got '
                            f'{type(t).__name__}')
        if not t.is_floating_point():
            raise TypeError(f'{name}.dtype={t.dtype}: expected a floating '
                            f'point tensor')
        if t.device.type != 'cpu':
            raise ValueError(f'{name} is on {t.device}: fused_cpu runs on '
                             f'the CPU only')
    N, T = math.prod(spec.in_shape), math.prod(spec.table_shape)
    if q.dim() != 4 or q.shape[2] != N:
        raise ValueError(f'q.shape={tuple(q.shape)}: expected [B, H, N, D] '
                         f'with N={N} (the window\'s map {spec.in_shape})')
    B, H, _, D = q.shape
    if tuple(k.shape) != (B, H, N, D):
        raise ValueError(f'k.shape={tuple(k.shape)}: expected '
                         f'{(B, H, N, D)} (as q)')
    if v.dim() != 4 or tuple(v.shape[:3]) != (B, H, N):
        raise ValueError(f'v.shape={tuple(v.shape)}: expected [B, H, N, Dv] '
                         f'with [B, H, N] = {(B, H, N)}')
    if pos_bias is not None and tuple(pos_bias.shape) != (H, T):
        raise ValueError(f'pos_bias.shape={tuple(pos_bias.shape)}: expected '
                         f'[H, T] = {(H, T)} for this window')
    if rel_keys is not None and tuple(rel_keys.shape) != (H, T, D):
        raise ValueError(f'rel_keys.shape={tuple(rel_keys.shape)}: expected '
                         f'[H, T, D] = {(H, T, D)} for this window')


def fused_cpu_attention(q, k, v, spec: WindowSpec, scale, pos_bias=None,
                        rel_keys=None):
    """Same contract as :func:`~convattn_mm.ops.reference.reference_attention`
    (``[B, H, N, D]`` layout, any strides); float32 and float64 natively,
    other float dtypes computed in float32 and cast back. Sizes and types
    are checked (:func:`check_call`) before the kernel runs; an empty batch
    returns an empty output."""
    check_call(q, k, v, spec, scale, pos_bias, rel_keys)
    dtype = q.dtype
    work = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    nbr, tbl = spec.neighbors()
    if spec.strided:
        q = q[:, :, spec.query_index()]

    def prep(t):
        return None if t is None else _rowmajor(t.to(work))

    def prep_table(t):
        return None if t is None else t.to(work).contiguous()

    out = _FusedNA.apply(prep(q), prep(k), prep(v), prep_table(pos_bias),
                         prep_table(rel_keys), nbr, tbl, float(scale))
    return out.to(dtype)


def fused_cpu_attention_qkv(qkv, spec: WindowSpec, scale, pos_bias=None,
                            rel_keys=None):
    """:func:`fused_cpu_attention` on a fused projection output.

    Args:
        qkv: ``[B, N, 3, H, D]`` (e.g. ``Linear(C, 3·H·D)(x).view(B, N, 3,
            H, D)``; last dim contiguous), float32 or float64.
        spec: the window; no query stride.
        pos_bias ``[H, T]``, rel_keys ``[H, T, D]``: as
            :func:`fused_cpu_attention`.

    Returns:
        ``[B, H, N, D]``, stored token-major (``[B, N, H, D]`` memory).
    """
    if not isinstance(qkv, torch.Tensor) or qkv.dim() != 5 or \
            qkv.shape[2] != 3:
        raise ValueError(f'qkv: expected a [B, N, 3, H, D] tensor, got '
                         f'{tuple(getattr(qkv, "shape", ()))}')
    if qkv.dtype not in (torch.float32, torch.float64):
        raise TypeError(f'qkv.dtype={qkv.dtype}: the fused entry takes '
                        f'float32 or float64')
    if spec.strided:
        raise NotImplementedError('query_stride > 1: the fused q/k/v entry '
                                  'has no query stride')
    q, k, v = _split_qkv(qkv)
    check_call(q, k, v, spec, scale, pos_bias, rel_keys)
    nbr, tbl = spec.neighbors()

    def prep_table(t):
        return None if t is None else t.to(qkv.dtype).contiguous()

    return _FusedNAQKV.apply(_rowmajor(qkv), prep_table(pos_bias),
                             prep_table(rel_keys), nbr, tbl, float(scale))


os.register_at_fork(after_in_child=_after_fork_in_child)
_prebuild_thread = None
if not os.environ.get('CONVATTN_MM_NO_PREBUILD'):
    try:
        _prebuild_thread = prebuild()
    except OSError:  # unreadable source or cache: first use reports it
        pass
