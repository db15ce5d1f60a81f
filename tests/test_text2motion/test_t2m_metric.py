"""T2M evaluator, the field's statistics and Text2MotionMetric."""
import math
import os.path as osp
import pickle
import re

import numpy as np
import pytest
import torch

from convattn_mm.datasets.humanml3d import HumanML3DDataset
from convattn_mm.datasets.humanml3d.fixture import LEXICON
from convattn_mm.evaluation import T2MEvaluator, WordVectorizer
from convattn_mm.evaluation import t2m_stats as S
from convattn_mm.evaluation.t2m_evaluator import POS_TAGS


def _chi_mean(d):
    """E|x - y| for x, y ~ N(0, I_d): 2 Γ((d+1)/2) / Γ(d/2)."""
    return 2 * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))


# ----------------------------------------------------------------- statistics
def test_fid_known_answers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6))
    assert abs(S.fid(x, x)) < 1e-8
    # diagonal covariances: |Δμ|² + Σ (σ1 - σ2)²
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    s1, s2 = rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, 4)
    assert S.frechet_distance(mu1, np.diag(s1 ** 2), mu2, np.diag(
        s2 ** 2)) == pytest.approx(((mu1 - mu2) ** 2).sum() + (
            (s1 - s2) ** 2).sum(), rel=1e-10)
    # general covariances: against scipy's matrix square root
    from scipy.linalg import sqrtm
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    c1, c2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    ref = np.trace(c1 + c2 - 2 * sqrtm(c1 @ c2).real)
    assert S.frechet_distance(np.zeros(5), c1, np.zeros(5),
                              c2) == pytest.approx(ref, rel=1e-8)
    # samples of two unit Gaussians 1.5 apart: FID ≈ 1.5² = 2.25
    shift = np.array([1.5, 0, 0, 0])
    p = rng.normal(size=(40000, 4))
    q = rng.normal(size=(40000, 4)) + shift
    assert S.fid(p, q) == pytest.approx(2.25, abs=0.05)


def test_r_precision_known_answers():
    # 1-D: texts 0, 10, 20, 30; motion 3 is second nearest to text 3
    text = np.array([[0.], [10.], [20.], [30.]])
    motion = np.array([[0.], [10.], [21.], [45.]])
    prec, mm_dist = S.r_precision(text, motion, batch_size=4, top_k=3)
    np.testing.assert_allclose(prec, [0.75, 1.0, 1.0])
    assert mm_dist == pytest.approx((0 + 0 + 1 + 15) / 4)
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(64, 16))
    prec, mm_dist = S.r_precision(emb, emb, 32, 3)
    np.testing.assert_array_equal(prec, 1.0)
    assert mm_dist == pytest.approx(0, abs=1e-6)
    # unrelated embeddings: chance, k / 32
    text = rng.normal(size=(32 * 400, 8))
    motion = rng.normal(size=(32 * 400, 8))
    prec, _ = S.r_precision(text, motion, 32, 3)
    np.testing.assert_allclose(prec, np.array([1, 2, 3]) / 32, atol=0.01)
    # an incomplete last group is dropped
    prec, _ = S.r_precision(emb[:40], np.concatenate(
        [emb[:32], rng.normal(size=(8, 16))]), 32, 1)
    assert prec[0] == 1.0
    with pytest.raises(ValueError, match=re.escape(
            'r_precision needs at least batch_size=32 pairs, got 31')):
        S.r_precision(emb[:31], emb[:31])


def test_diversity_and_multimodality_closed_form():
    rng = np.random.default_rng(2)
    d, sigma = 8, 2.0
    x = rng.normal(scale=sigma, size=(8000, d))
    expected = sigma * _chi_mean(d)
    assert S.diversity(x, 4000, rng) == pytest.approx(expected, rel=0.03)
    # generations of one caption spread by sigma around far-apart centres
    centres = rng.normal(scale=50, size=(300, 1, d))
    groups = centres + rng.normal(scale=sigma, size=(300, 30, d))
    assert S.multimodality(groups, 10, rng) == pytest.approx(expected,
                                                             rel=0.03)
    assert S.multimodality(np.repeat(centres, 30, 1), 10, rng) == 0.0
    with pytest.raises(ValueError, match='diversity_times=10 must be <='):
        S.diversity(x[:5], 10, rng)
    with pytest.raises(ValueError, match=re.escape('R >= mm_times=10')):
        S.multimodality(groups[:, :5], 10, rng)


# ------------------------------------------------------------------ evaluator
def test_evaluator_checkpoint_layout_and_round_trip(tmp_path):
    ev = T2MEvaluator()
    sd = {k: tuple(v.shape) for k, v in ev.state_dict().items()}
    # names and shapes of the released text_mot_match/model/finest.tar
    assert sd['movement_encoder.main.0.weight'] == (512, 259, 4)
    assert sd['movement_encoder.main.3.weight'] == (512, 512, 4)
    assert sd['movement_encoder.out_net.weight'] == (512, 512)
    assert sd['motion_encoder.hidden'] == (2, 1, 1024)
    assert sd['motion_encoder.gru.weight_ih_l0_reverse'] == (3072, 1024)
    assert sd['motion_encoder.output_net.3.weight'] == (512, 1024)
    assert sd['text_encoder.pos_emb.weight'] == (300, 15)
    assert sd['text_encoder.input_emb.weight'] == (512, 300)
    assert sd['text_encoder.hidden'] == (2, 1, 512)
    assert sd['text_encoder.output_net.1.weight'] == (512, )
    assert len(sd) == 42
    path = str(tmp_path / 'finest.tar')
    ev.save_checkpoint(path, epoch=7)
    ckpt = torch.load(path, weights_only=True)
    assert sorted(ckpt) == ['epoch', 'motion_encoder', 'movement_encoder',
                            'text_encoder']
    loaded = T2MEvaluator.from_checkpoint(path)
    motion, lengths = torch.randn(3, 40, 263), torch.tensor([40, 24, 12])
    torch.testing.assert_close(loaded.encode_motion(motion, lengths),
                               ev.encode_motion(motion, lengths))
    words, pos = torch.randn(3, 22, 300), torch.zeros(3, 22, 15)
    torch.testing.assert_close(
        loaded.encode_text(words, pos, torch.tensor([22, 9, 3])),
        ev.encode_text(words, pos, torch.tensor([22, 9, 3])))
    assert not loaded.training
    loaded.train()
    assert not loaded.training    # dropout stays off
    # KIT-ML: 251-d features
    kit = T2MEvaluator(dim_pose=251)
    kit.save_checkpoint(str(tmp_path / 'kit.tar'))
    kit = T2MEvaluator.from_checkpoint(str(tmp_path / 'kit.tar'), 'kit')
    assert kit.movement_encoder.main[0].weight.shape == (512, 247, 4)
    with pytest.raises(ValueError, match=re.escape(
            "takes 251-d features; motion_format='humanml3d' has 263")):
        T2MEvaluator.from_checkpoint(str(tmp_path / 'kit.tar'), 'humanml3d')
    small = T2MEvaluator(movement_hidden=8, movement_latent=8,
                         motion_hidden=8, text_hidden=8, embed_dims=4)
    small.save_checkpoint(str(tmp_path / 'small.tar'))
    small = T2MEvaluator.from_checkpoint(str(tmp_path / 'small.tar'))
    assert small.encode_motion(motion, lengths).shape == (3, 4)
    bad = torch.load(str(tmp_path / 'small.tar'), weights_only=True)
    bad['text_encoder']['input_emb.weight'] = torch.zeros(8, 5)
    torch.save(bad, str(tmp_path / 'bad.tar'))
    with pytest.raises(RuntimeError, match='size mismatch for input_emb'):
        T2MEvaluator.from_checkpoint(str(tmp_path / 'bad.tar'))
    torch.save(dict(text_encoder=ev.text_encoder.state_dict()),
               str(tmp_path / 'partial.tar'))
    with pytest.raises(KeyError, match=re.escape(
            "lacks ['movement_encoder', 'motion_encoder']")):
        T2MEvaluator.from_checkpoint(str(tmp_path / 'partial.tar'))
    with pytest.raises(FileNotFoundError, match='nothing.tar does not exist'):
        T2MEvaluator.from_checkpoint(str(tmp_path / 'nothing.tar'))


def test_evaluator_checkpoint_with_objects_needs_trust(tmp_path, monkeypatch):
    """A file that holds more than tensors (here an argparse namespace)
    loads only when the user says it is trusted."""
    import argparse
    small = T2MEvaluator(movement_hidden=8, movement_latent=8,
                         motion_hidden=8, text_hidden=8, embed_dims=4)
    path = str(tmp_path / 'finest.tar')
    small.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    torch.save(dict(ckpt, opt=argparse.Namespace(lr=1e-4)), path)
    monkeypatch.delenv('CONVATTN_MM_TRUSTED_CHECKPOINTS', raising=False)
    with pytest.raises(RuntimeError, match='(?s)does not load with '
                       'weights_only=True.*CONVATTN_MM_TRUSTED_CHECKPOINTS'):
        T2MEvaluator.from_checkpoint(path)
    from convattn_mm.compat import trusted_checkpoints
    with trusted_checkpoints(), pytest.warns(UserWarning,
                                             match='weights_only=False'):
        T2MEvaluator.from_checkpoint(path)
    monkeypatch.setenv('CONVATTN_MM_TRUSTED_CHECKPOINTS', '1')
    with pytest.warns(UserWarning, match='weights_only=False'):
        loaded = T2MEvaluator.from_checkpoint(path)
    torch.testing.assert_close(loaded.text_encoder.hidden,
                               small.text_encoder.hidden)


def test_motion_embedding_ignores_batch_mates_and_padding_length():
    """Zero padding (after normalisation, as the field pads to 196 frames)
    enters the last conv window, so a motion is padded by at least 8 zero
    frames; beyond that, neither the padding length nor the other motions
    of the batch change its embedding."""
    ev = T2MEvaluator()
    motion = torch.randn(1, 48, 263)
    alone = ev.encode_motion(torch.cat([motion, torch.zeros(1, 8, 263)], 1),
                             torch.tensor([48]))
    padded = torch.cat([motion, torch.zeros(1, 40, 263)], 1)
    batch = torch.cat([padded, torch.randn(1, 88, 263)])
    together = ev.encode_motion(batch, torch.tensor([48, 88]))
    torch.testing.assert_close(together[:1], alone, atol=1e-5, rtol=1e-5)


def write_glove(folder, dim=300, seed=0):
    """Files in the layout of the evaluator's GloVe subset."""
    words = ['sos', 'eos', 'unk'] + sorted(
        {v.split('/')[0] for v in LEXICON.values()})
    vectors = np.random.default_rng(seed).normal(
        size=(len(words), dim)).astype(np.float32)
    np.save(osp.join(folder, 'our_vab_data.npy'), vectors)
    with open(osp.join(folder, 'our_vab_words.pkl'), 'wb') as f:
        pickle.dump(words, f)
    with open(osp.join(folder, 'our_vab_idx.pkl'), 'wb') as f:
        pickle.dump({w: i for i, w in enumerate(words)}, f)
    return vectors, words


def test_word_vectorizer(tmp_path):
    vectors, words = write_glove(str(tmp_path))
    wv = WordVectorizer(str(tmp_path))
    emb, pos, length = wv(['a/DET', 'person/NOUN', 'walk/VERB', 'left/NOUN',
                           'zzz/NOUN'])
    assert emb.shape == (22, 300) and pos.shape == (22, 15) and length == 7
    tags = [POS_TAGS[i] for i in pos.argmax(1)]
    assert tags[:7] == ['OTHER', 'DET', 'NOUN', 'Act_VIP', 'Loc_VIP',
                        'OTHER', 'OTHER']
    assert set(tags[7:]) == {'OTHER'}
    np.testing.assert_array_equal(emb[0], vectors[words.index('sos')])
    np.testing.assert_array_equal(emb[5], vectors[words.index('unk')])
    np.testing.assert_array_equal(emb[6], vectors[words.index('eos')])
    np.testing.assert_array_equal(emb[7:], np.broadcast_to(
        vectors[words.index('unk')], (15, 300)))
    _, _, length = wv(['a/DET'] * 30)
    assert length == 22
    with pytest.raises(FileNotFoundError, match='our_vab_data.npy does not'):
        WordVectorizer(str(tmp_path / 'none'))


# --------------------------------------------------------------------- metric
@pytest.fixture(scope='module')
def evaluator_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp('t2m_eval')
    # the released layout at a smaller width (sizes are read from the file)
    T2MEvaluator(movement_hidden=64, movement_latent=64, motion_hidden=64,
                 text_hidden=64, embed_dims=32).save_checkpoint(
                     str(folder / 'finest.tar'))
    write_glove(str(folder))
    rng = np.random.default_rng(3)
    np.save(str(folder / 'mean.npy'), rng.normal(size=263).astype('f4'))
    np.save(str(folder / 'std.npy'), rng.uniform(0.5, 2, 263).astype('f4'))
    return dict(evaluator_checkpoint=str(folder / 'finest.tar'),
                glove_dir=str(folder),
                evaluator_mean=str(folder / 'mean.npy'),
                evaluator_std=str(folder / 'std.npy'))


def _samples(root):
    ds = HumanML3DDataset(root, split='all', normalize=False)
    out = []
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        motion = torch.from_numpy(info['motion'])
        out.append(dict(gt_motion=motion, gt_length=len(motion),
                        pred_motion=motion.clone(),
                        tokens=info['captions'][0]['tokens']))
    return out


def test_metric_known_answers(evaluator_files, humanml3d_root):
    from mmengine.evaluator import Evaluator
    cfg = dict(type='convattn_mm.Text2MotionMetric', r_precision_batch=8,
               diversity_times=16, **evaluator_files)
    samples = _samples(humanml3d_root)
    assert len(samples) >= 24
    evaluator = Evaluator(cfg)
    for start in range(0, len(samples), 5):
        evaluator.process(samples[start:start + 5])
    same = evaluator.evaluate(len(samples))
    assert abs(same['t2m/FID']) < 1e-3
    for key in ('R_precision_top1', 'R_precision_top3', 'MM_Dist',
                'Diversity'):
        assert same[f't2m/{key}'] == pytest.approx(same[f't2m/gt_{key}'])
    assert 't2m/MultiModality' not in same
    # generated = the real motions of other captions: FID grows, while the
    # real row is unchanged
    rng = np.random.default_rng(0)
    shuffled = [dict(s, pred_motion=samples[j]['gt_motion'])
                for s, j in zip(samples, rng.permutation(len(samples)))]
    for s in shuffled[:2]:
        s['pred_motion_repeats'] = [s['pred_motion'] + 0.05 * torch.randn_like(
            s['pred_motion']) for _ in range(10)]
    evaluator = Evaluator(cfg)
    evaluator.process(shuffled)
    other = evaluator.evaluate(len(shuffled))
    assert other['t2m/gt_MM_Dist'] == pytest.approx(same['t2m/gt_MM_Dist'])
    assert other['t2m/MultiModality'] > 0
    assert other['t2m/R_precision_top1'] != same['t2m/R_precision_top1']


def test_metric_config_errors(evaluator_files):
    from convattn_mm.evaluation import Text2MotionMetric
    with pytest.raises(ValueError, match=re.escape(
            'top_k=4 must be <= r_precision_batch=2')):
        Text2MotionMetric(r_precision_batch=2, top_k=4, **evaluator_files)
    with pytest.raises(ValueError, match=re.escape(
            'evaluator_std has shape (251,); expected (263,)')):
        Text2MotionMetric(**dict(evaluator_files,
                                 evaluator_std=np.ones(251)))
    with pytest.raises(ValueError, match=re.escape(
            "takes 263-d features; motion_format='kit' has 251")):
        Text2MotionMetric(**dict(evaluator_files, motion_format='kit'))
