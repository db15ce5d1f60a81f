"""Shared helpers of the 3-D pose tests: the H36M-format fixture, configs
made small and pointed at it, and Runner runs."""
import glob
import json
import os.path as osp

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
POSE3D_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'pose3d',
                                           '*.py')))
TCN_27FRM = ('mmpose::body_3d_keypoint/video_pose_lift/h36m/'
             'video-pose-lift_tcn-27frm-supv_8xb128-160e_h36m.py')
FIXTURE = dict(num_frames=300, num_cameras=2, noise_2d=15.0, seed=0)
#: frames of the fixture's test split (S9, S11; four actions)
TEST_FRAMES = 2 * 4 * FIXTURE['num_cameras'] * FIXTURE['num_frames']


def spread(count):
    """``count`` test-split sample indices spread over every sequence
    (each action and camera), for a quick validation."""
    return list(range(0, TEST_FRAMES, TEST_FRAMES // count))[:count]

#: backbone settings small enough for CPU runs (same types)
SMALL = {
    'TemporalAttnNet': dict(embed_dims=64, depth=3, num_heads=4,
                            drop_rate=0.0),
    'MotionAttnNet': dict(embed_dims=32, depth=2, num_heads=4,
                          kernel_size=9, drop_path_rate=0.0),
    'TCNAttnNet': dict(stem_channels=64, dropout=0.0),
    'TCN': dict(stem_channels=64, dropout=0.0),
}
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def name(path):
    return osp.splitext(osp.basename(path))[0]


def load_config(path):
    """A config file, or an installed package's (``mmpose::...``)."""
    from mmengine.config import Config
    from mmengine.hub import get_config
    return get_config(path) if '::' in path else Config.fromfile(path)


def fixture_cfg(path, data_root, work_dir, iters, batch_size=64, lr=1e-3,
                val_indices=None, noisy=None, small=True, seed=0,
                val_batch_size=256):
    """``path`` (a config file or ``mmpose::`` name) trained for ``iters``
    iterations on the fixture at ``data_root``: small backbone, no worker
    processes, warm-up + cosine over the run, validation and a checkpoint
    at the end, fixed seed. ``noisy``: the fixture's noisy 2-D files
    (``{'train': ..., 'test': ...}``) as mmpose's detection source."""
    cfg = load_config(path)
    bb = cfg.model.backbone
    if small:
        bb.update(SMALL[bb.type.split('.')[-1]])
        width = bb.get('embed_dims', bb.get('stem_channels'))
        cfg.model.head.in_channels = width
    for loader in LOADERS:
        dl = cfg.get(loader)
        if dl is None:
            continue
        dl.update(num_workers=0, persistent_workers=False, pin_memory=False)
        dl.pop('prefetch_factor', None)
        ds = dl.dataset
        ds.data_root = data_root
        train = loader == 'train_dataloader'
        dl.batch_size = batch_size if train else val_batch_size
        if noisy is not None:
            ds.keypoint_2d_src = 'detection'
            ds.keypoint_2d_det_file = noisy['train' if train else 'test']
        if not train and val_indices is not None:
            ds.indices = val_indices
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters,
                         val_interval=iters)
    warm = max(1, iters // 10)
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
             end=warm),
        dict(type='CosineAnnealingLR', by_epoch=False, begin=warm,
             end=max(iters, warm + 1), T_max=max(iters - warm, 1),
             eta_min=lr * 0.01)
    ]
    cfg.optim_wrapper.optimizer.lr = lr
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        interval=iters, by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=50)
    cfg.work_dir = str(work_dir)
    # one visualizer (and scalars.json) per run, also in one process
    cfg.visualizer.name = f'visualizer:{work_dir}'
    cfg.randomness = dict(seed=seed)
    cfg.pop('auto_scale_lr', None)
    cfg.load_from = None
    cfg.resume = False
    return cfg


def train(cfg):
    """Train ``cfg`` with mmengine's Runner; return the runner and the
    validation metrics of the end of training."""
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner, last_val_metrics(cfg.work_dir)


def last_val_metrics(work_dir):
    """The metrics of the last validation, from the ``scalars.json`` that
    mmengine's LocalVisBackend wrote."""
    files = sorted(glob.glob(osp.join(str(work_dir), '*', 'vis_data',
                                      'scalars.json')))
    assert files, f'no scalars.json under {work_dir}'
    last = None
    with open(files[-1]) as f:
        for line in f:
            row = json.loads(line)
            if 'MPJPE' in row:
                last = row
    assert last is not None, 'no validation was logged'
    return last


def mean_pose_mpjpe(data_root, paths):
    """MPJPE (metres) on the test split of the training set's mean
    root-relative pose, placed at each frame's true root."""
    def rel(split):
        S = np.load(osp.join(data_root, paths[split]))['S'][..., :3]
        return S - S[:, :1]
    mean = rel('train').mean(0)
    return float(np.linalg.norm(rel('test') - mean, axis=-1).mean())
