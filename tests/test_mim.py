"""``mim train|test|run convattn_mm ...`` in the project environment and from
a wheel install (openmim installed without openxlab; tools/ and configs/
reached through ``convattn_mm/.mim``)."""
import importlib.metadata as md
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import glob
import zipfile

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BIN = osp.dirname(sys.executable)
MIM = osp.join(BIN, 'mim')
CONFIG = 'convattnnet-demo_1xb64_digits.py'  # found by name in .mim/configs
# one iteration: 2 training images, batch 2; 4 test images
TINY = ['train_dataloader.dataset.indices=2', 'train_dataloader.batch_size=2',
        'val_dataloader.dataset.indices=4',
        'test_dataloader.dataset.indices=4',
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.logger.interval=1']
# what a wheel is built from
SOURCES = ['setup.py', 'setup.cfg', 'README.md', 'MANIFEST.in', 'convattn_mm',
           'tools', 'configs', 'requirements', 'model-index.yml']


def _installed(dist):
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _mim(*args, env=None, cwd=None, timeout=600):
    proc = subprocess.run([MIM, *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout + proc.stderr


def test_openmim_installed_without_openxlab():
    """openmim's own needs are there, openxlab's setuptools pin is not."""
    from packaging.version import Version
    assert _installed('openmim'), 'openmim is not installed'
    assert _installed('openxlab') is None
    setuptools = Version(_installed('setuptools'))
    assert Version('77.0.3') <= setuptools < Version('81')  # docs/design.md, section 6
    for module in ('mim', 'mim.commands.train', 'mim.commands.test',
                   'mim.commands.run', 'mim.commands.list'):
        __import__(module)
    assert 'mim' in _mim('--version')


def test_mim_finds_package_tools_and_configs():
    """The installed convattn_mm exposes .mim/tools and .mim/configs where
    mim looks (what a PEP 660 editable install cannot do)."""
    from mim.utils import get_installed_path
    root = get_installed_path('convattn_mm')
    assert osp.isfile(osp.join(root, '.mim', 'tools', 'train.py')), root
    assert osp.isfile(osp.join(root, '.mim', 'tools', 'test.py')), root
    assert osp.isfile(osp.join(root, '.mim', 'configs', 'convattn_net',
                               CONFIG)), root
    assert osp.isfile(osp.join(root, '.mim', 'model-index.yml')), root


def test_model_index_lists_every_config():
    """model-index.yml imports one metafile per config folder, and the
    metafiles name every config (and only existing ones)."""
    import glob

    import yaml
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    folders = sorted(osp.dirname(p) for p in index['Import'])
    assert folders == sorted(
        osp.relpath(d, ROOT) for d in glob.glob(f'{ROOT}/configs/*')
        if osp.basename(d) != '_base_')
    listed = []
    for meta in index['Import']:
        with open(osp.join(ROOT, meta)) as f:
            data = yaml.safe_load(f)
        names = {c['Name'] for c in data['Collections']}
        for m in data['Models']:
            assert m['In Collection'] in names
            assert osp.isfile(osp.join(ROOT, m['Config'])), m['Config']
            listed.append(m['Config'])
    on_disk = sorted(osp.relpath(p, ROOT)
                     for p in glob.glob(f'{ROOT}/configs/*/*.py')
                     if '/_base_/' not in p)
    assert sorted(listed) == on_disk


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    """A wheel built from a copy of the sources (so the build does not touch
    the working tree's convattn_mm/.mim links)."""
    src = tmp_path_factory.mktemp('src')
    for name in SOURCES:
        path = osp.join(ROOT, name)
        if osp.isdir(path):
            shutil.copytree(path, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns(
                                '__pycache__', '*.egg-info', '.mim'))
        elif osp.isfile(path):
            shutil.copy(path, src / name)
    out = tmp_path_factory.mktemp('dist')
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '--no-deps',
         '--no-build-isolation', '--no-index', str(src), '-w', str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl, ) = [p for p in os.listdir(out) if p.endswith('.whl')]
    return str(out / whl)


def test_wheel_carries_tools_and_configs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expect = []
    for folder in ('tools', 'configs'):
        for dirpath, _, files in os.walk(osp.join(ROOT, folder)):
            expect += [osp.relpath(osp.join(dirpath, f), ROOT)
                       for f in files if f.endswith('.py')]
    assert expect
    expect += ['model-index.yml'] + [
        osp.relpath(p, ROOT)
        for p in glob.glob(f'{ROOT}/configs/*/metafile.yml')]
    missing = [p for p in expect if f'convattn_mm/.mim/{p}' not in names]
    assert not missing, missing


def test_mim_list_and_search_from_wheel(tmp_path, wheel):
    """``mim list`` shows the package (it needs .mim/model-index.yml) and
    ``mim search convattn_mm`` lists the configs, from a wheel install."""
    site = tmp_path / 'site'
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-index',
         '--target', str(site), wheel], capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    env = dict(os.environ, PYTHONPATH=str(site))
    listed = _mim('list', env=env, cwd=tmp_path)
    assert re.search(r'convattn[-_]mm', listed), listed  # pip normalises
    found = _mim('search', 'convattn_mm', env=env, cwd=tmp_path)
    for config in ('retinanet_convattn-r50-exact_fpn_1x_coco',
                   'td-hm_convattn-r50-exact_8xb64-210e_coco-256x192',
                   'convattnnet-demo_1xb64_digits'):
        assert config in found, found[-3000:]


def test_mim_run_tool(tmp_path):
    """``mim run convattn_mm <tool>``: tools/misc/upgrade_checkpoint.py."""
    from mmengine.logging import HistoryBuffer
    buf = HistoryBuffer()
    buf.update(2.0)
    old = tmp_path / 'old.pth'
    torch.save(dict(meta=dict(epoch=1), state_dict={},
                    message_hub=dict(log_scalars={'loss': buf},
                                     runtime_info={}, resumed_keys={})), old)
    new = tmp_path / 'new.pth'
    _mim('run', 'convattn_mm', 'upgrade_checkpoint', str(old), str(new))
    ckpt = torch.load(new, weights_only=True)
    meta = dict(ckpt['meta'])
    assert meta.pop('content_hash').startswith('blake2b:')  # written anew
    assert meta == dict(epoch=1)


def _train_then_test(tmp_path, env=None):
    work = tmp_path / 'work'
    _mim('train', 'convattn_mm', CONFIG, '--gpus', '0', '--work-dir',
         str(work), '--cfg-options', *TINY, env=env, cwd=tmp_path)
    ckpt = work / 'epoch_1.pth'
    assert ckpt.exists(), os.listdir(work)
    assert torch.load(ckpt, weights_only=True)['meta']['iter'] == 1
    out = _mim('test', 'convattn_mm', CONFIG, '--gpus', '0', '--checkpoint',
               str(ckpt), '--work-dir', str(tmp_path / 'test'),
               '--cfg-options', *TINY, env=env, cwd=tmp_path)
    assert 'accuracy/top1' in out, out[-2000:]
    return out


@pytest.mark.slow
def test_mim_train_and_test_project_env(tmp_path):
    """One-iteration ``mim train`` then ``mim test`` with the checkpoint, in
    the environment ``make setup`` builds."""
    _train_then_test(tmp_path)


@pytest.mark.slow
def test_mim_train_and_test_from_wheel(tmp_path, wheel):
    """The same from a wheel install (into a folder put first on the path,
    so mim and the tools see the wheel's copy of the package)."""
    site = tmp_path / 'site'
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-index',
         '--target', str(site), wheel], capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    env = dict(os.environ, PYTHONPATH=str(site))
    probe = subprocess.run(
        [sys.executable, '-c', 'from mim.utils import get_installed_path; '
         'print(get_installed_path("convattn_mm"))'],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert probe.stdout.strip() == str(site / 'convattn_mm'), probe.stderr
    _train_then_test(tmp_path, env=env)
