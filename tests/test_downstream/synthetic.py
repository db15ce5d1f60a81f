"""Shared helpers of the downstream tests: configs, models at small sizes,
and synthetic batches with clear objects / keypoints."""
import copy
import glob
import os.path as osp

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DET_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'det', '*.py')))
POSE_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'pose', '*.py')))
HEATMAP_CONFIGS = [c for c in POSE_CONFIGS
                   if osp.basename(c).startswith('td-hm_')]

#: a ConvAttnNet small enough for CPU training runs, every mixer kind
SMALL_ARCH = dict(embed_dims=[16, 32, 48, 64], depths=[1, 1, 1, 1],
                  num_heads=[2, 2, 4, 4],
                  mixers=['conv', 'local', 'local', 'global'], mlp_ratio=2.0)


def name(path):
    return osp.splitext(osp.basename(path))[0]


def load_config(path, pretrained=None):
    """The config with the backbone's Pretrained init removed (or pointed
    at ``pretrained``)."""
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    bb = cfg.model.get('backbone')
    if bb is not None:
        bb.init_cfg = None if pretrained is None else dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')
    return cfg


def shrink_backbone(cfg):
    """Make the config's backbone small for training runs (same type, same
    stage outputs, narrower)."""
    bb = cfg.model.backbone
    if bb.type.endswith('ConvAttnNet'):
        bb.arch = copy.deepcopy(SMALL_ARCH)
        widths = SMALL_ARCH['embed_dims']
    elif bb.type.endswith('SAResNet'):
        bb.base_channels = 8
        bb.num_heads = 4
        widths = [8 * 4 * 2**i for i in range(4)]
    elif bb.type.endswith('ConvToAttention'):  # a converted ResNet
        bb.module.stem_channels = bb.module.base_channels = 8
        widths = [8 * 4 * 2**i for i in range(4)]
        bb = bb.module
    else:
        raise ValueError(f'no small version of {bb.type}')
    outs = [widths[i] for i in bb.out_indices]
    if 'neck' in cfg.model:
        cfg.model.neck.in_channels = outs
    else:
        cfg.model.head.in_channels = outs[-1]
    return cfg


def scope(name):
    from mmengine.registry import DefaultScope
    return DefaultScope.overwrite_default_scope(name)


# ------------------------------------------------------------- detection
def boxes_image(size=(128, 128), boxes=((16, 20, 60, 70), (72, 24, 116, 56),
                                       (40, 80, 104, 120)),
                labels=(0, 1, 2), seed=0):
    """A dark noisy image with bright rectangles of one colour per class.

    Returns ``(img uint8 [H, W, 3] BGR, boxes float32 [N, 4] xyxy, labels
    int64 [N], masks uint8 [N, H, W])``.
    """
    rng = np.random.default_rng(seed)
    H, W = size
    img = rng.integers(0, 40, (H, W, 3)).astype(np.uint8)
    colours = [(255, 60, 60), (60, 255, 60), (60, 60, 255), (255, 255, 60)]
    masks = np.zeros((len(boxes), H, W), np.uint8)
    for i, ((x1, y1, x2, y2), lab) in enumerate(zip(boxes, labels)):
        img[y1:y2, x1:x2] = colours[lab % len(colours)]
        masks[i, y1:y2, x1:x2] = 1
    return (img, np.asarray(boxes, np.float32), np.asarray(labels, np.int64),
            masks)


def det_batch(img, boxes, labels, masks=None, copies=1):
    """``dict(inputs, data_samples)`` for ``model.train_step``."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    H, W = img.shape[:2]
    inputs, samples = [], []
    for _ in range(copies):
        inputs.append(torch.from_numpy(img).permute(2, 0, 1).contiguous())
        s = DetDataSample(metainfo=dict(
            img_shape=(H, W), ori_shape=(H, W), pad_shape=(H, W),
            scale_factor=(1.0, 1.0), img_id=0))
        gt = InstanceData()
        gt.bboxes = torch.from_numpy(boxes)
        gt.labels = torch.from_numpy(labels)
        if masks is not None:
            gt.masks = BitmapMasks(masks, H, W)
        s.gt_instances = gt
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def box_iou(a, b):
    """IoU matrix of xyxy boxes ``[N, 4]`` x ``[M, 4]``."""
    a, b = torch.as_tensor(a, dtype=torch.float), torch.as_tensor(
        b, dtype=torch.float)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda t: (t[:, 2:] - t[:, :2]).clamp(min=0).prod(-1)  # noqa
    return inter / (area(a)[:, None] + area(b)[None] - inter)


# ------------------------------------------------------------------ pose
def keypoints_image(size=(64, 64), num_keypoints=17, seed=0):
    """A dark image with a bright dot per keypoint (dots on a 5x4 grid
    inside the image, each keypoint a distinct colour).

    Returns ``(img uint8 [H, W, 3], keypoints float32 [1, K, 2] (x, y))``.
    """
    rng = np.random.default_rng(seed)
    H, W = size
    img = rng.integers(0, 30, (H, W, 3)).astype(np.uint8)
    cells = [(x, y) for y in range(5) for x in range(4)][:num_keypoints]
    kpts = []
    for k, (cx, cy) in enumerate(cells):
        x = int((cx + 0.5) * W / 4)
        y = int((cy + 0.5) * H / 5)
        colour = (60 + 11 * k, 255 - 9 * k, 120 + 7 * (k % 5))
        img[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2] = colour
        kpts.append((x, y))
    return img, np.asarray([kpts], np.float32)


def pose_batch(img, keypoints, input_size, heatmap_size, copies=1):
    """Run mmpose's top-down train transforms (no augmentation) on one
    image whose box is the whole image: ``dict(inputs, data_samples)``."""
    from mmpose.datasets.transforms import (GenerateTarget,
                                            GetBBoxCenterScale,
                                            PackPoseInputs, TopdownAffine)
    H, W = img.shape[:2]
    codec = dict(type='MSRAHeatmap', input_size=input_size,
                 heatmap_size=heatmap_size, sigma=2)
    steps = [GetBBoxCenterScale(padding=1.0),
             TopdownAffine(input_size=input_size),
             GenerateTarget(encoder=codec), PackPoseInputs()]
    inputs, samples = [], []
    for _ in range(copies):
        res = dict(img=img.copy(), img_shape=(H, W), ori_shape=(H, W),
                   bbox=np.array([[0, 0, W, H]], np.float32),
                   bbox_score=np.ones(1, np.float32),
                   keypoints=keypoints.copy(),
                   keypoints_visible=np.ones(keypoints.shape[:2],
                                             np.float32),
                   id=0, img_id=0, img_path='synthetic', category_id=1,
                   flip_indices=list(range(keypoints.shape[1])))
        for t in steps:
            res = t(res)
        inputs.append(res['inputs'])
        samples.append(res['data_samples'])
    return dict(inputs=inputs, data_samples=samples)


def pose_codec(cfg, input_size, heatmap_size):
    """Set the heatmap codec of a top-down config (head decoder) to a small
    input size."""
    codec = dict(type='MSRAHeatmap', input_size=input_size,
                 heatmap_size=heatmap_size, sigma=2)
    cfg.model.head.decoder = codec
    cfg.codec = codec
    return cfg


def require_stack():
    """Skip (at import of a test module) unless the full stack is there."""
    import pytest
    reason = ('needs the downstream stack (full mmcv with ops, mmdet, '
              'mmpose): make setup-full')
    for mod in ('mmcv.ops', 'mmdet', 'mmpose'):
        pytest.importorskip(mod, reason=reason)
