"""Loading that loses nothing and trusts nothing.

* ``tools/test.py`` and ``tools/train.py --resume`` refuse a checkpoint that
  does not fit the model (wrong shapes, a third of the keys missing, no
  matching key), naming the file and the keys; ``--load-partial`` loads it.
* Checkpoints saved through mmengine carry a content hash; flipped bytes in
  their tensors are refused on load, naming the file.
* Empty files and files that are not checkpoints get a clear error.
* Trusted (full-pickle) loading changes nothing for other threads: a plain
  ``torch.load`` running at the same time still refuses a pickle payload.
"""
import importlib.util
import os
import os.path as osp
import pickle
import struct
import threading
import time
import zipfile

import pytest
import torch
from mmengine.runner import checkpoint as mm_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint

import convattn_mm.registry  # noqa: F401 (applies convattn_mm.compat)
from convattn_mm import compat
from convattn_mm.compat import CheckpointError


def save_checkpoint(checkpoint, filename):
    # through the module: the name patched by compat.apply()
    return mm_checkpoint.save_checkpoint(checkpoint, filename)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs', 'convattn_net',
                'convattnnet-demo_1xb64_digits.py')


def _tool(name):
    spec = importlib.util.spec_from_file_location(
        f'_tool_{name}', osp.join(ROOT, 'tools', f'{name}.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _state_dict(seed=0):
    torch.manual_seed(seed)
    return {f'layer{i}.weight': torch.randn(64, 64) for i in range(4)}


def _flip_tensor_bytes(path, count=2000, seed=0):
    """Flip ``count`` bytes inside the tensor records of a torch zip file,
    in place (the zip directory and the pickle stay intact)."""
    gen = torch.Generator().manual_seed(seed)
    with zipfile.ZipFile(path) as zf:
        records = [i for i in zf.infolist() if '/data/' in i.filename]
    with open(path, 'r+b') as f:
        spans = []
        for info in records:
            f.seek(info.header_offset + 26)
            name_len, extra_len = struct.unpack('<HH', f.read(4))
            start = info.header_offset + 30 + name_len + extra_len
            spans.append((start, info.file_size))
        total = sum(n for _, n in spans)
        picks = torch.randperm(total, generator=gen)[:count].tolist()
        for p in picks:
            for start, n in spans:
                if p < n:
                    f.seek(start + p)
                    byte = f.read(1)[0]
                    f.seek(start + p)
                    f.write(bytes([byte ^ 0xFF]))
                    break
                p -= n


# ------------------------------------------------------------ integrity
def test_saved_checkpoint_has_a_hash_that_verifies(tmp_path):
    path = str(tmp_path / 'ok.pth')
    save_checkpoint(dict(meta=dict(epoch=1), state_dict=_state_dict()), path)
    raw = torch.load(path, weights_only=True)
    assert raw['meta'][compat.HASH_KEY].startswith('blake2b:')
    assert compat.verify_content_hash(raw, path) is True
    ckpt = _load_checkpoint(path)  # mmengine's path verifies it
    torch.testing.assert_close(ckpt['state_dict'], _state_dict())


def test_flipped_bytes_are_refused_naming_the_file(tmp_path):
    path = str(tmp_path / 'flipped.pth')
    save_checkpoint(dict(meta=dict(epoch=1), state_dict=_state_dict()), path)
    _flip_tensor_bytes(path, 2000)
    # torch itself reads the corrupted file without complaint ...
    changed = torch.load(path, weights_only=True)['state_dict']
    assert any(not torch.equal(changed[k], v)
               for k, v in _state_dict().items())
    # ... the package's loader does not
    with pytest.raises(CheckpointError, match=r"flipped\.pth' is corrupted"):
        _load_checkpoint(path)


def test_hash_covers_every_tensor_and_skips_bare_state_dicts():
    ckpt = dict(meta=dict(epoch=1), state_dict=_state_dict(),
                optimizer=dict(state={0: dict(exp_avg=torch.ones(3))}))
    hashed = compat.add_content_hash(ckpt)
    assert compat.HASH_KEY not in ckpt['meta']  # input untouched
    hashed['optimizer']['state'][0]['exp_avg'][1] = 2.0
    with pytest.raises(CheckpointError):
        compat.verify_content_hash(hashed, 'x.pth')
    bare = _state_dict()
    assert compat.add_content_hash(bare) is bare  # a key would be a weight


def test_empty_file_is_a_clear_error(tmp_path):
    path = tmp_path / 'empty.pth'
    path.write_bytes(b'')
    with pytest.raises(CheckpointError, match=r"empty\.pth' is empty"):
        _load_checkpoint(str(path))


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    path = tmp_path / 'random.pth'
    path.write_bytes(os.urandom(4096).replace(b'\x80', b'\x00', 1)
                     .lstrip(b'\x80') or b'x')
    with pytest.raises(CheckpointError,
                       match=r"random\.pth' is not a PyTorch checkpoint"):
        _load_checkpoint(str(path))


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / 'cut.pth'
    save_checkpoint(dict(meta=dict(epoch=1), state_dict=_state_dict()),
                    str(path))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pth' cannot be read"):
        _load_checkpoint(str(path))


# ------------------------------------------------------------ trusted loading
_payload_runs = []


def _payload():
    _payload_runs.append(1)
    return 'pwned'


class _Malicious:

    def __reduce__(self):
        return (_payload, ())


def test_trusted_load_is_per_call_not_process_wide(tmp_path):
    """Thread A loads a trusted old checkpoint over and over; thread B runs a
    plain ``torch.load`` of a pickle payload at the same time. B must be
    refused every time (a process-wide switch let it run)."""
    trusted = str(tmp_path / 'old.pth')
    torch.save(dict(state_dict=_state_dict(), extra=threading.Lock),
               trusted)  # a global outside the allow-list: needs trust
    evil = str(tmp_path / 'evil.pth')
    torch.save(dict(x=_Malicious()), evil)
    _payload_runs.clear()
    stop = time.monotonic() + 1.5
    counts = dict(trusted=0, refused=0, ran=0)

    def trusting():
        with compat.trusted_checkpoints():
            while time.monotonic() < stop:
                CheckpointLoader.load_checkpoint(trusted, logger='silent')
                counts['trusted'] += 1

    def plain():
        while time.monotonic() < stop:
            try:
                torch.load(evil)
                counts['ran'] += 1
            except pickle.UnpicklingError:
                counts['refused'] += 1

    threads = [threading.Thread(target=trusting),
               threading.Thread(target=plain)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts['trusted'] > 0 and counts['refused'] > 0
    assert counts['ran'] == 0 and not _payload_runs, counts
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ
    # and without trust, the old file is refused with the way out named
    with pytest.raises(pickle.UnpicklingError, match=compat.TRUST_ENV):
        CheckpointLoader.load_checkpoint(trusted, logger='silent')


# ------------------------------------------------------------ strict tools
@pytest.fixture(scope='module')
def demo_checkpoint(tmp_path_factory):
    """A checkpoint of the demo config's model (random weights)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(DEMO)
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    path = str(tmp_path_factory.mktemp('ckpt') / 'demo.pth')
    save_checkpoint(dict(meta=dict(epoch=1, iter=1),
                         state_dict=model.state_dict()), path)
    return path


def _variant(src, dst, edit):
    ckpt = torch.load(src, weights_only=True)
    ckpt['state_dict'] = edit(dict(ckpt['state_dict']))
    ckpt['meta'].pop(compat.HASH_KEY)
    save_checkpoint(ckpt, dst)  # re-hashed: only the fit is wrong
    return dst


def _drop_third(sd):
    return {k: v for i, (k, v) in enumerate(sorted(sd.items())) if i % 3}


def _wrong_shape(sd):
    key = next(k for k in sorted(sd) if k.endswith('weight')
               and sd[k].dim() >= 2)
    sd[key] = torch.zeros(sd[key].shape[0] + 1, *sd[key].shape[1:])
    return sd


def _no_match(sd):
    return {'encoder.' + k: v for k, v in sd.items()}


TEST_ARGS = ['--cfg-options', 'test_dataloader.dataset.indices=8']


@pytest.mark.parametrize('edit, words', [
    (_drop_third, 'missing from the checkpoint'),
    (_wrong_shape, 'wrong shapes: 1 keys'),
    (_no_match, 'not in the model'),
])
def test_test_tool_refuses_a_checkpoint_that_does_not_fit(
        demo_checkpoint, tmp_path, edit, words):
    bad = _variant(demo_checkpoint, str(tmp_path / 'bad.pth'), edit)
    with pytest.raises(CheckpointError) as err:
        _tool('test').main([DEMO, bad, '--work-dir', str(tmp_path / 'w'),
                            *TEST_ARGS])
    assert "bad.pth' does not fit the model" in str(err.value)
    assert words in str(err.value)
    assert '--load-partial' in str(err.value)


def test_load_partial_loads_what_fits(demo_checkpoint, tmp_path):
    bad = _variant(demo_checkpoint, str(tmp_path / 'bad.pth'), _drop_third)
    out = tmp_path / 'm.json'
    assert _tool('test').main([
        DEMO, bad, '--load-partial', '--work-dir', str(tmp_path / 'w'),
        '--out', str(out), *TEST_ARGS]) == 0
    assert out.exists()


def test_test_tool_accepts_the_exact_checkpoint(demo_checkpoint, tmp_path):
    assert _tool('test').main([
        DEMO, demo_checkpoint, '--work-dir', str(tmp_path / 'w'),
        *TEST_ARGS]) == 0


def test_test_tool_refuses_a_corrupted_checkpoint(demo_checkpoint, tmp_path):
    bad = str(tmp_path / 'flipped.pth')
    with open(demo_checkpoint, 'rb') as f, open(bad, 'wb') as g:
        g.write(f.read())
    _flip_tensor_bytes(bad, 2000)
    with pytest.raises(CheckpointError, match=r"flipped\.pth' is corrupted"):
        _tool('test').main([DEMO, bad, '--work-dir', str(tmp_path / 'w'),
                            *TEST_ARGS])


def test_resume_is_strict_unless_load_partial(demo_checkpoint, tmp_path):
    train = _tool('train')
    bad = _variant(demo_checkpoint, str(tmp_path / 'bad.pth'), _drop_third)
    with pytest.raises(CheckpointError, match="bad.pth' does not fit"):
        train.main([DEMO, '--resume', bad, '--work-dir',
                    str(tmp_path / 'w'), '--cfg-options',
                    'train_dataloader.dataset.indices=8'])
    hooks = lambda *a: [  # noqa: E731
        h['type'] for h in train.merge_args(
            __import__('mmengine').Config.fromfile(DEMO),
            train.parse_args([DEMO, *a])).get('custom_hooks', [])]
    assert 'convattn_mm.StrictLoadHook' in hooks('--resume', bad)
    assert 'convattn_mm.StrictLoadHook' not in hooks(
        '--resume', bad, '--load-partial')
    assert 'convattn_mm.StrictLoadHook' not in hooks()  # fine-tuning
