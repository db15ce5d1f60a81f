"""Every 3-D pose config trains and evaluates through mmengine's Runner and
mmpose's own Human36mDataset, codecs, transforms, heads, losses and MPJPE
metric, on the H36M-format fixture: through this repository's
``tools/train.py``, and (27 frames) through mmpose's packaged
``tools/train.py`` that ``mim train mmpose`` runs. The checkpoints load with
``weights_only=True`` and serve ``inference_pose_lifter_model``."""
import os
import os.path as osp
import runpy
import subprocess
import sys

import pytest

from tests.test_downstream.synthetic import require_stack

require_stack()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from .lifting import (POSE3D_CONFIGS, ROOT, fixture_cfg,  # noqa: E402
                      last_val_metrics, name, spread)

ACTIONS = ('Directions', 'Greeting', 'SittingDown', 'Walking')
LIFT_27FRM = (f'{ROOT}/configs/pose3d/'
              'video-pose-lift_temporal-attn-27frm_8xb128-160e_h36m.py')


def test_config_list_is_complete():
    assert [name(c) for c in POSE3D_CONFIGS] == [
        'motionbert_motion-attn-243frm_8xb32-240e_h36m',
        'video-pose-lift_tcn-attn-27frm_8xb128-160e_h36m',
        'video-pose-lift_temporal-attn-1frm_8xb128-160e_h36m',
        'video-pose-lift_temporal-attn-243frm_8xb128-160e_h36m',
        'video-pose-lift_temporal-attn-27frm_8xb128-160e_h36m',
    ]


@pytest.mark.parametrize('path', POSE3D_CONFIGS, ids=name)
def test_full_size_config_builds_and_lifts(path):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope, MODELS
    cfg = Config.fromfile(path)
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.clip_grad.max_norm > 0
    assert cfg.param_scheduler[0].type == 'LinearLR'  # warm-up
    with DefaultScope.overwrite_default_scope('mmpose'):
        model = MODELS.build(cfg.model).eval()
    assert type(model.backbone).__module__.startswith('convattn_mm.')
    with torch.no_grad():
        if 'motionbert' in path:
            out = model.head(model.extract_feat(torch.randn(1, 243, 17, 3)))
            assert out.shape == (1, 243, 17, 3)
        else:
            frames = cfg.train_dataloader.dataset.seq_len
            out = model.head(model.extract_feat(torch.randn(1, 34, frames)))
            assert out.shape == (1, 17, 3)


def run_repo_train_script(cfg, tmp_path):
    path = tmp_path / 'cfg.py'
    cfg.dump(str(path))
    train = runpy.run_path(f'{ROOT}/tools/train.py', run_name='train')
    assert train['main']([str(path)]) == 0
    return path


def check_run(work_dir, iters, actions=ACTIONS):
    """Metrics of mmpose's MPJPE evaluators (overall and per action) were
    reported; the checkpoint loads with weights_only=True."""
    metrics = last_val_metrics(work_dir)
    for mode in ('MPJPE', 'P-MPJPE'):
        assert np.isfinite(metrics[mode]) and metrics[mode] > 0
        for action in actions:
            assert np.isfinite(metrics[f'{mode}_{action}'])
    ckpt = torch.load(osp.join(str(work_dir), f'iter_{iters}.pth'),
                      weights_only=True)
    assert ckpt['meta']['iter'] == iters
    assert any(k.startswith('backbone.') for k in ckpt['state_dict'])
    return metrics


@pytest.mark.parametrize('path', POSE3D_CONFIGS, ids=name)
def test_config_trains_and_evaluates_on_fixture(path, h36m, tmp_path):
    root, paths = h36m
    iters = 3
    cfg = fixture_cfg(path, root, tmp_path / 'work', iters, batch_size=16,
                      val_indices=None if 'motionbert' in path else spread(96))
    run_repo_train_script(cfg, tmp_path)
    # MotionBERT's protocol skips S9's Greeting and SittingDown clips
    check_run(tmp_path / 'work', iters)


def test_mim_train_mmpose_and_inference(h36m, tmp_path):
    """mmpose's own tools/train.py (``mim train mmpose CONFIG``) on the
    27-frame config; mmpose's inference_pose_lifter_model on the checkpoint
    it wrote, with a 2-D pose sequence of a held-out subject."""
    root, paths = h36m
    iters = 3
    work = tmp_path / 'work'
    cfg = fixture_cfg(LIFT_27FRM, root, work, iters, batch_size=16,
                      val_indices=spread(96))
    cfg_path = tmp_path / 'cfg.py'
    cfg.dump(str(cfg_path))
    import mmpose
    train = osp.join(osp.dirname(mmpose.__file__), '.mim', 'tools',
                     'train.py')
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, train, str(cfg_path)],
                         cwd=str(tmp_path), capture_output=True, text=True,
                         env=env, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    check_run(work, iters)
    ckpt = str(work / f'iter_{iters}.pth')
    start, frames = 500, 27  # S9 Walking, camera 55011271 (1000x1000)
    poses = lift_sequence(str(cfg_path), ckpt, root, paths, start, frames)
    assert poses.shape == (1, 17, 3) and np.isfinite(poses).all()
    # the same window through the test data set and the model: the same
    # pose (inference places the root-relative pose at a zero root)
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DefaultScope
    from mmpose.apis import init_model
    from mmpose.registry import DATASETS
    cfg = Config.fromfile(str(cfg_path))
    ds_cfg = cfg.test_dataloader.dataset
    ds_cfg.pop('indices', None)
    with DefaultScope.overwrite_default_scope('mmpose'):
        ds = DATASETS.build(ds_cfg)
    target = np.load(osp.join(root, paths['test']))['imgname'][
        start + frames // 2]
    idx = next(i for i in range(len(ds))
               if ds.get_data_info(i)['target_img_path'][0] == target)
    model = init_model(str(cfg_path), ckpt, device='cpu')
    with torch.no_grad():
        ref = model.test_step(pseudo_collate([ds[idx]]))[0]
    ref = np.asarray(ref.pred_instances.keypoints).reshape(1, 17, 3)
    np.testing.assert_allclose(poses - poses[:, :1], ref - ref[:, :1],
                               atol=1e-5)


def lift_sequence(cfg_path, ckpt, root, paths, start=500, frames=27):
    """``inference_pose_lifter_model`` on ``frames`` 2-D poses of the test
    split (as a 2-D detector's results): the centre frame's 3-D pose."""
    from mmengine.structures import InstanceData
    from mmpose.apis import inference_pose_lifter_model, init_model
    from mmpose.structures import PoseDataSample
    model = init_model(cfg_path, ckpt, device='cpu')
    part = np.load(osp.join(root, paths['test']))['part'][start:start +
                                                          frames, :, :2]
    seq = []
    for kpts in part:
        s = PoseDataSample()
        s.pred_instances = InstanceData(
            keypoints=kpts[None].astype(np.float32),
            keypoint_scores=np.ones((1, 17), np.float32),
            bboxes=np.concatenate([kpts.min(0), kpts.max(0)])[None])
        s.gt_instances = InstanceData()
        s.track_id = 0
        seq.append([s])
    results = inference_pose_lifter_model(model, seq, with_track_id=True,
                                          image_size=(1000, 1000))
    return np.asarray(results[0].pred_instances.keypoints)
