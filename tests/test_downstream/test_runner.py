"""Training through mmengine's Runner from a COCO-format data set on disk
(the data pipeline, the loops and the hooks of the real configs), a few
iterations each; the checkpoint it writes loads with weights_only=True.
The detector trains through this repository's ``tools/train.py``, the pose
estimator through mmpose's own packaged ``tools/train.py`` (what
``mim train mmpose CONFIG`` runs)."""
import json
import os
import os.path as osp
import subprocess
import sys


from .synthetic import require_stack

require_stack()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .synthetic import (ROOT, boxes_image, keypoints_image,  # noqa: E402
                        load_config, shrink_backbone)


def write_coco(root, img, annotations, categories):
    (root / 'images').mkdir()
    cv2.imwrite(str(root / 'images' / '0.png'), img)
    H, W = img.shape[:2]
    ann = dict(
        images=[dict(id=1, file_name='0.png', height=H, width=W)],
        annotations=[dict(id=i + 1, image_id=1, iscrowd=0, **a)
                     for i, a in enumerate(annotations)],
        categories=categories)
    (root / 'train.json').write_text(json.dumps(ann))


def iter_runtime(cfg, work_dir, iters=2):
    cfg.work_dir = str(work_dir)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters,
                         val_interval=iters + 1)
    cfg.param_scheduler = []
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        interval=iters, by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.train_dataloader.update(batch_size=1, num_workers=0,
                                persistent_workers=False)
    cfg.pop('auto_scale_lr', None)
    cfg.load_from = None
    cfg.resume = False
    return cfg


def check_checkpoint(work_dir, iters):
    ckpt = torch.load(work_dir / f'iter_{iters}.pth', weights_only=True)
    assert ckpt['meta']['iter'] == iters
    assert any(k.startswith('backbone.') for k in ckpt['state_dict'])


def run_repo_train_script(cfg, tmp_path, iters):
    """This repository's ``tools/train.py`` (in this process) on ``cfg``."""
    import runpy
    path = tmp_path / 'det_cfg.py'
    cfg.dump(str(path))
    train = runpy.run_path(f'{ROOT}/tools/train.py', run_name='train')
    assert train['main']([str(path)]) == 0
    check_checkpoint(tmp_path / 'work', iters)


def test_repo_train_script_trains_detector(tmp_path):
    img, boxes, labels, _ = boxes_image((128, 128))
    classes = ('red', 'green', 'blue')
    write_coco(tmp_path, img, [
        dict(category_id=int(l) + 1, bbox=[float(b[0]), float(b[1]),
                                          float(b[2] - b[0]),
                                          float(b[3] - b[1])],
             area=float((b[2] - b[0]) * (b[3] - b[1])),
             segmentation=[[float(b[0]), float(b[1]), float(b[2]),
                            float(b[1]), float(b[2]), float(b[3]),
                            float(b[0]), float(b[3])]])
        for b, l in zip(boxes, labels)
    ], [dict(id=i + 1, name=n) for i, n in enumerate(classes)])
    cfg = shrink_backbone(load_config(
        f'{ROOT}/configs/det/mask-rcnn_convattn-t_fpn_1x_coco.py'))
    cfg.model.roi_head.bbox_head.num_classes = 3
    cfg.model.roi_head.mask_head.num_classes = 3
    ds = cfg.train_dataloader.dataset
    ds.update(data_root=str(tmp_path), ann_file='train.json',
              data_prefix=dict(img='images/'), metainfo=dict(classes=classes))
    for step in ds.pipeline:
        if step.type == 'Resize':
            step.scale = (128, 128)
    run_repo_train_script(iter_runtime(cfg, tmp_path / 'work'), tmp_path, 2)


def test_packaged_train_script_trains_pose_estimator(tmp_path):
    img, kpts = keypoints_image((96, 96))
    K = kpts.shape[1]
    flat = np.concatenate([kpts[0], np.full((K, 1), 2.0)], 1).reshape(-1)
    write_coco(tmp_path, img, [
        dict(category_id=1, bbox=[0.0, 0.0, 96.0, 96.0], area=9216.0,
             keypoints=flat.tolist(), num_keypoints=K)
    ], [dict(id=1, name='person')])
    cfg = shrink_backbone(load_config(
        f'{ROOT}/configs/pose/td-hm_saresnet50_8xb64-210e_coco-256x192.py'))
    codec = dict(type='MSRAHeatmap', input_size=(64, 64),
                 heatmap_size=(16, 16), sigma=2)
    cfg.model.head.decoder = codec
    ds = cfg.train_dataloader.dataset
    ds.update(data_root=str(tmp_path), ann_file='train.json',
              data_prefix=dict(img='images/'))
    for step in ds.pipeline:
        if step.type == 'TopdownAffine':
            step.input_size = codec['input_size']
        if step.type == 'GenerateTarget':
            step.encoder = codec
    work = tmp_path / 'work'
    cfg = iter_runtime(cfg, work)
    cfg.dump(str(tmp_path / 'pose_cfg.py'))
    import mmpose
    train = osp.join(osp.dirname(mmpose.__file__), '.mim', 'tools',
                     'train.py')
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, train,
                          str(tmp_path / 'pose_cfg.py')], cwd=str(tmp_path),
                         capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    check_checkpoint(work, 2)
