"""convattn_mm.compat: checkpoints written by mmengine's Runner load under
``weights_only=True``; resume keeps the message hub; unsafe old checkpoints
load only on an explicit trusted-source choice."""
import collections
import os.path as osp
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

from convattn_mm import compat

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

compat.apply()


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)


def _runner(work_dir, resume=False, load_from=None, max_epochs=2):
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Net(BaseModel):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x, y, mode='tensor'):
            out = self.fc(x)
            if mode == 'loss':
                return dict(loss=nn.functional.cross_entropy(out, y))
            return out

    g = torch.Generator().manual_seed(0)
    data = [dict(x=torch.randn(4, generator=g), y=torch.tensor(i % 3))
            for i in range(16)]

    def collate(batch):
        return dict(x=torch.stack([b['x'] for b in batch]),
                    y=torch.stack([b['y'] for b in batch]))

    return Runner(
        model=Net(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=data, batch_size=4, collate_fn=collate,
                              sampler=dict(type='DefaultSampler',
                                           shuffle=True)),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        # MultiStepLR's state holds a collections.Counter
        param_scheduler=dict(type='MultiStepLR', milestones=[1]),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           interval=1)),
        resume=resume, load_from=load_from,
        experiment_name=f'compat_{osp.basename(str(work_dir))}_{resume}',
        randomness=dict(seed=0), default_scope='mmengine')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A 2-epoch run: its checkpoints and its final message hub."""
    work = tmp_path_factory.mktemp('run')
    runner = _runner(work)
    runner.train()
    losses = runner.message_hub.get_scalar('train/loss').data
    return work, [x.copy() for x in losses]


def _old_checkpoint(path):
    """A checkpoint as mmengine writes it without this package: a real
    HistoryBuffer in the message hub."""
    from mmengine.logging import HistoryBuffer
    buf = HistoryBuffer()
    buf.update(1.5)
    torch.save(dict(state_dict=_Net().state_dict(), meta=dict(epoch=1),
                    message_hub=dict(log_scalars={'train/loss': buf},
                                     runtime_info={}, resumed_keys={})),
               path)
    return path


def test_apply_is_idempotent_and_allowlists_no_getattr():
    from mmengine.runner import checkpoint as ckpt
    save = ckpt.save_checkpoint
    assert compat.apply() and compat.apply()
    assert ckpt.save_checkpoint is save  # not wrapped twice
    names = {n for _, n in compat.safe_globals()}
    assert 'numpy.core.multiarray.scalar' in names  # numpy 1 files
    assert 'numpy._core.multiarray.scalar' in names  # numpy 2 files
    allowed = [getattr(g, '__name__', g) if not isinstance(g, tuple)
               else g[1] for g in torch.serialization.get_safe_globals()]
    assert not any('getattr' in str(a) for a in allowed)


def test_runner_checkpoint_loads_weights_only(trained):
    work, _ = trained
    path = osp.join(work, 'epoch_2.pth')
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    buf = ckpt['message_hub']['log_scalars']['train/loss']
    assert compat.is_plain_history_buffer(buf)
    assert buf['log_history'].dtype == torch.float64
    # numpy scalars are saved as Python scalars
    assert type(ckpt['message_hub']['runtime_info']['eta']) is float
    assert isinstance(ckpt['param_schedulers'][0]['milestones'],
                      collections.Counter)


def test_mmengine_loaders_work(trained):
    from mmengine.runner.checkpoint import _load_checkpoint, load_checkpoint
    work, _ = trained
    path = osp.join(work, 'epoch_2.pth')
    assert set(_load_checkpoint(path)) >= {'state_dict', 'message_hub'}
    model = nn.Sequential()
    model.fc = nn.Linear(4, 3)
    load_checkpoint(model, path, strict=True)
    ref = torch.load(path, weights_only=True)['state_dict']['fc.weight']
    assert torch.equal(model.fc.weight.data, ref)


def test_resume_restores_message_hub(trained, tmp_path):
    import shutil
    work, losses = trained
    shutil.copy(osp.join(work, 'epoch_2.pth'), tmp_path / 'epoch_2.pth')
    runner = _runner(tmp_path, resume=True,
                     load_from=str(tmp_path / 'epoch_2.pth'))
    runner.train()  # max_epochs reached: nothing to train, resume only
    from mmengine.logging import HistoryBuffer
    buf = runner.message_hub.log_scalars['train/loss']
    assert isinstance(buf, HistoryBuffer)
    np.testing.assert_array_equal(buf.data[0], losses[0])
    np.testing.assert_array_equal(buf.data[1], losses[1])
    assert runner.epoch == 2 and runner.iter == 8


def test_plain_history_buffers_round_trip():
    from mmengine.logging import HistoryBuffer
    buf = HistoryBuffer(max_length=5)
    for v in (1, 2, 3):
        buf.update(v, count=2)
    state = collections.OrderedDict(a=[buf, 3], b={'c': buf}, d=(1, 2),
                                    e=np.float32(0.5), f=np.arange(2))
    plain = compat.plain_history_buffers(state)
    assert type(plain['e']) is float and plain['e'] == 0.5
    assert plain['f'] is state['f']  # arrays stay (allow-listed)
    assert isinstance(state['a'][0], HistoryBuffer)  # input untouched
    assert isinstance(plain, collections.OrderedDict)
    assert plain['d'] is state['d']
    back = compat.restore_history_buffers(plain)
    for got in (back['a'][0], back['b']['c']):
        assert got.max_length == 5
        assert got._log_history.dtype == buf._log_history.dtype
        np.testing.assert_array_equal(got._log_history, buf._log_history)
        np.testing.assert_array_equal(got._count_history,
                                      buf._count_history)
        assert got.mean() == buf.mean()


def test_old_checkpoint_needs_explicit_trust(tmp_path, monkeypatch):
    from mmengine.runner.checkpoint import _load_checkpoint
    monkeypatch.delenv(compat.TRUST_ENV, raising=False)
    path = _old_checkpoint(str(tmp_path / 'old.pth'))
    with pytest.raises(pickle.UnpicklingError, match=compat.TRUST_ENV):
        _load_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    with compat.trusted_checkpoints():
        assert _load_checkpoint(path)['meta'] == dict(epoch=1)
    with pytest.raises(pickle.UnpicklingError):  # trust does not persist
        _load_checkpoint(path)
    monkeypatch.setenv(compat.TRUST_ENV, '1')
    assert _load_checkpoint(path)['meta'] == dict(epoch=1)
    monkeypatch.setenv(compat.TRUST_ENV, '0')
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint(path)
    with pytest.warns(UserWarning, match='trusted'):
        assert 'message_hub' in compat.load_trusted_checkpoint(path)


def test_upgrade_checkpoint(tmp_path):
    from mmengine.logging import MessageHub
    src = _old_checkpoint(str(tmp_path / 'old.pth'))
    dst = str(tmp_path / 'new.pth')
    with pytest.warns(UserWarning):
        compat.upgrade_checkpoint(src, dst)
    ckpt = torch.load(dst, weights_only=True)
    hub = MessageHub.get_instance('compat_upgrade')
    hub.load_state_dict(ckpt['message_hub'])
    assert hub.get_scalar('train/loss').current() == 1.5


def test_arbitrary_objects_still_refused(tmp_path):
    path = str(tmp_path / 'evil.pth')
    torch.save({'x': _Net()}, path)  # a pickled module object
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def test_registry_import_applies_compat():
    """Users never import the package by hand: importing the registry (what
    mmengine does for a ``convattn_mm.`` type) must activate the fixes."""
    code = ('import convattn_mm.registry, convattn_mm.compat as c; '
            'assert c.is_applied(), "compat not applied"')
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
