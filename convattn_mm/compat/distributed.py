"""Distributed training on CPU with mmengine 0.10.7.

``--launcher pytorch`` under ``torchrun`` (tests, CPU clusters): mmengine
calls ``torch.cuda.set_device`` unconditionally and gives DDP
``device_ids`` for a CPU model. Without a GPU (and no MLU/NPU/MUSA), the
process group uses ``gloo`` (``nccl``, the configs' default, needs GPUs: a
warning says so) and CPU models get ``device_ids=None``. With a GPU nothing
changes. :func:`apply` is idempotent.
"""
import threading
import warnings

import torch

_applied = False
_lock = threading.Lock()


def _patch_cpu_distributed():
    from mmengine.dist import utils as dist_utils
    orig = dist_utils._init_dist_pytorch
    if not getattr(orig, '_convattn_mm', False):

        def _init_dist_pytorch(backend, init_backend='torch', **kwargs):
            from mmengine.device import (is_mlu_available, is_musa_available,
                                         is_npu_available)
            if (torch.cuda.is_available() or init_backend != 'torch'
                    or is_mlu_available() or is_npu_available()
                    or is_musa_available()):
                return orig(backend, init_backend=init_backend, **kwargs)
            if backend == 'nccl':
                warnings.warn("no GPU: using the 'gloo' process-group "
                              "backend instead of 'nccl'", UserWarning)
                backend = 'gloo'
            torch.distributed.init_process_group(backend=backend, **kwargs)

        _init_dist_pytorch.__wrapped__ = orig
        _init_dist_pytorch._convattn_mm = True
        dist_utils._init_dist_pytorch = _init_dist_pytorch

    from mmengine.model import MMDistributedDataParallel as DDP
    init = DDP.__init__
    if not getattr(init, '_convattn_mm', False):

        def __init__(self, module, *args, **kwargs):
            params = list(module.parameters())
            if params and all(p.device.type == 'cpu' for p in params):
                # DDP takes no device ids for a CPU module
                kwargs['device_ids'] = None
                kwargs.pop('output_device', None)
            init(self, module, *args, **kwargs)

        __init__.__wrapped__ = init
        __init__._convattn_mm = True
        DDP.__init__ = __init__


def apply():
    """Install the CPU process-group and DDP fixes (idempotent,
    thread-safe). Returns True."""
    global _applied
    with _lock:
        if not _applied:
            _patch_cpu_distributed()
            _applied = True
    return True


def is_applied():
    """True once :func:`apply` has run."""
    return _applied
