"""The field's text-to-motion metrics with the T2M evaluator."""
import os.path as osp

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from convattn_mm.datasets.humanml3d.formats import get_motion_format
from convattn_mm.registry import METRICS

from . import t2m_stats
from .t2m_evaluator import T2MEvaluator, WordVectorizer


def sample_get(sample, key, default=None):
    """``sample[key]`` for a dict or an mmengine data element (data field or
    metainfo), else ``default``."""
    value = sample.get(key, default)
    return default if value is None else value


def _as_numpy(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().float().numpy()
    return np.asarray(x, np.float32)


def _load_stat(value, name, dim):
    if isinstance(value, str):
        if not osp.isfile(value):
            raise FileNotFoundError(f'{name}: {value} does not exist')
        value = np.load(value)
    value = np.asarray(value, np.float32)
    if value.shape != (dim, ):
        raise ValueError(f'{name} has shape {value.shape}; expected ({dim},)')
    return value


@METRICS.register_module()
class Text2MotionMetric(BaseMetric):
    """R-precision (top 1..3), FID, MM-Dist, Diversity and MultiModality with
    the T2M evaluator (Guo et al. 2022), as reported on HumanML3D / KIT-ML.

    Each data sample (a dict or data element from the model's
    ``test_step``) provides:

    * ``pred_motion``: generated features ``[T, D]`` in the data set's units
      (denormalised); ``pred_length`` (optional, default T);
    * ``gt_motion``, ``gt_length``: the real motion, likewise;
    * ``tokens``: the caption's ``word/POS`` tokens;
    * optionally ``pred_motion_repeats`` (``[R, T, D]`` or a list of R
      ``[T, D]``) and ``pred_length_repeats``: R generations for the same
      caption, for MultiModality.

    Motions are normalised with the evaluator's ``mean``/``std``, cut to
    multiples of ``unit_length`` = 4 frames and zero-padded to
    ``pad_length`` frames (the field's 196; the padding enters the last
    convolution window, so it changes the embedding). The pairs are
    shuffled with ``seed`` (the field shuffles its test loader) and grouped by
    ``r_precision_batch``; an incomplete last group is dropped.

    Metrics (``prefix/`` before each): ``R_precision_top{k}``, ``MM_Dist``,
    ``Diversity`` of the generated motions; ``FID`` (generated vs real);
    ``gt_R_precision_top{k}``, ``gt_MM_Dist``, ``gt_Diversity`` of the
    real motions (the field's "Real" row); ``MultiModality`` when repeats
    were given.

    Args:
        evaluator_checkpoint (str): the released ``finest.tar`` for the data
            set (``<checkpoints>/t2m/text_mot_match/model/finest.tar`` or
            ``.../kit/...``).
        glove_dir (str): folder of ``our_vab_data.npy``/``_words.pkl``/
            ``_idx.pkl``.
        evaluator_mean, evaluator_std (str | array): the evaluator's
            normalisation (``.../Comp_v6_KLD01/meta/mean.npy``, ``std.npy``
            in the release; ``.../Comp_v6_KLD005/...`` for KIT-ML).
        motion_format (str): ``'humanml3d'`` or ``'kit'``.
        r_precision_batch (int): group size (32). top_k (int): 3.
        diversity_times (int): pairs for Diversity (300; at most N).
        mm_times (int): pairs per caption for MultiModality (10).
        max_text_len (int): tokens kept per caption (20).
        pad_length (int): motions are zero-padded to this many frames, or to
            the longest motion of the batch when that is longer (196).
        seed (int): shuffling and pair sampling (Diversity draws the same
            pairs for the generated and the real motions).
        device (str): where the evaluator runs.
    """
    default_prefix = 't2m'

    def __init__(self, evaluator_checkpoint, glove_dir, evaluator_mean,
                 evaluator_std, motion_format='humanml3d',
                 r_precision_batch=32, top_k=3, diversity_times=300,
                 mm_times=10, max_text_len=20, pad_length=196, seed=0,
                 device='cpu',
                 collect_device='cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.fmt = get_motion_format(motion_format)
        for name, value in (('r_precision_batch', r_precision_batch),
                            ('top_k', top_k),
                            ('diversity_times', diversity_times),
                            ('mm_times', mm_times),
                            ('max_text_len', max_text_len),
                            ('pad_length', pad_length)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'{name}={value!r} must be an int >= 1')
        if top_k > r_precision_batch:
            raise ValueError(f'top_k={top_k} must be <= r_precision_batch='
                             f'{r_precision_batch}')
        self.device = torch.device(device)
        self.evaluator = T2MEvaluator.from_checkpoint(
            evaluator_checkpoint, self.fmt).to(self.device)
        self.words = WordVectorizer(glove_dir)
        dim = self.fmt.feature_dim
        self.mean = _load_stat(evaluator_mean, 'evaluator_mean', dim)
        self.std = _load_stat(evaluator_std, 'evaluator_std', dim)
        self.r_precision_batch, self.top_k = r_precision_batch, top_k
        self.diversity_times, self.mm_times = diversity_times, mm_times
        self.max_text_len, self.seed = max_text_len, seed
        self.pad_length = pad_length

    def _encode_motions(self, motions, lengths):
        unit = self.evaluator.unit_length
        batch, lens = [], []
        for motion, length in zip(motions, lengths):
            motion = _as_numpy(motion)
            length = int(min(length, len(motion))) // unit * unit
            if motion.ndim != 2 or motion.shape[1] != self.fmt.feature_dim:
                raise ValueError(f'motion of shape {motion.shape} does not '
                                 f'fit motion_format={self.fmt.name!r}')
            if length < unit:
                raise ValueError(f'motion of {len(motion)} frames is shorter '
                                 f'than unit_length={unit}')
            batch.append((motion[:length] - self.mean) / self.std)
            lens.append(length)
        padded = np.zeros((len(batch), max(lens + [self.pad_length]),
                           self.fmt.feature_dim),
                          np.float32)
        for i, m in enumerate(batch):
            padded[i, :len(m)] = m
        emb = self.evaluator.encode_motion(
            torch.from_numpy(padded).to(self.device), torch.tensor(lens))
        return emb.cpu().numpy()

    def _encode_texts(self, token_lists):
        words, pos, lens = zip(*(self.words(t, self.max_text_len)
                                 for t in token_lists))
        emb = self.evaluator.encode_text(
            torch.from_numpy(np.stack(words)).to(self.device),
            torch.from_numpy(np.stack(pos)).to(self.device),
            torch.tensor(lens))
        return emb.cpu().numpy()

    def process(self, data_batch, data_samples):
        """Embed each sample's caption, generated and real motion."""
        if not data_samples:
            return
        get = sample_get
        pred = [get(s, 'pred_motion') for s in data_samples]
        gt = [get(s, 'gt_motion') for s in data_samples]
        for name, values in (('pred_motion', pred), ('gt_motion', gt)):
            if any(v is None for v in values):
                raise KeyError(f'Text2MotionMetric: a data sample has no '
                               f'{name!r}')
        pred_emb = self._encode_motions(
            pred, [get(s, 'pred_length', len(m))
                   for s, m in zip(data_samples, pred)])
        gt_emb = self._encode_motions(
            gt, [get(s, 'gt_length', len(m))
                 for s, m in zip(data_samples, gt)])
        text_emb = self._encode_texts([get(s, 'tokens') for s in data_samples])
        for i, s in enumerate(data_samples):
            result = dict(text=text_emb[i], pred=pred_emb[i], gt=gt_emb[i])
            repeats = get(s, 'pred_motion_repeats')
            if repeats is not None:
                lens = get(s, 'pred_length_repeats',
                           [len(r) for r in repeats])
                result['repeats'] = self._encode_motions(list(repeats), lens)
            self.results.append(result)

    def compute_metrics(self, results):
        order = np.random.default_rng(self.seed).permutation(len(results))
        text = np.stack([results[i]['text'] for i in order])
        pred = np.stack([results[i]['pred'] for i in order])
        gt = np.stack([results[i]['gt'] for i in order])
        metrics = {}
        for name, motion in (('', pred), ('gt_', gt)):
            prec, mm_dist = t2m_stats.r_precision(
                text, motion, self.r_precision_batch, self.top_k)
            for k, p in enumerate(prec, 1):
                metrics[f'{name}R_precision_top{k}'] = float(p)
            metrics[f'{name}MM_Dist'] = mm_dist
            # the same pairs for generated and real motions
            metrics[f'{name}Diversity'] = t2m_stats.diversity(
                motion, min(self.diversity_times, len(motion)),
                np.random.default_rng(self.seed + 1))
        metrics['FID'] = t2m_stats.fid(gt, pred)
        repeats = [r['repeats'] for r in results if 'repeats' in r]
        if repeats:
            metrics['MultiModality'] = t2m_stats.multimodality(
                np.stack(repeats), self.mm_times,
                np.random.default_rng(self.seed + 2))
        return metrics
