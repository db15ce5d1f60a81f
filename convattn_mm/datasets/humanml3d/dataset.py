"""HumanML3D / KIT-ML text-motion pairs as an mmengine dataset."""
import math
import os.path as osp

import numpy as np
from mmengine.dataset import BaseDataset

from convattn_mm.registry import DATASETS

from .formats import get_motion_format


def parse_caption_line(line, where='caption line'):
    """``'caption#word/POS word/POS#start#end'`` -> dict with ``caption``,
    ``tokens`` (list of ``'word/POS'``), ``start`` and ``end`` (seconds;
    ``nan`` reads as 0). ``where`` names the line in error messages."""
    fields = line.rstrip('\n').rsplit('#', 3)
    if len(fields) != 4 or not fields[0].strip():
        raise ValueError(f'{where}: expected "caption#tokens#start#end", got '
                         f'{line.strip()!r}')
    caption, tokens, start, end = fields
    try:
        start, end = float(start), float(end)
    except ValueError:
        raise ValueError(f'{where}: start/end {start!r}/{end!r} are not '
                         f'numbers in {line.strip()!r}') from None
    start = 0.0 if math.isnan(start) else start
    end = 0.0 if math.isnan(end) else end
    if (start or end) and not 0 <= start < end:
        raise ValueError(f'{where}: segment {start}..{end} s is not an '
                         f'interval 0 <= start < end in {line.strip()!r}')
    return dict(caption=caption.strip(), tokens=tokens.split(),
                start=start, end=end)


@DATASETS.register_module()
class HumanML3DDataset(BaseDataset):
    """Text-motion pairs in HumanML3D's layout (also KIT-ML's)::

        data_root/new_joint_vecs/<id>.npy   features [T, 263] (KIT-ML 251)
        data_root/texts/<id>.txt            caption#tokens#start#end lines
        data_root/Mean.npy, Std.npy         [263] each
        data_root/<split>.txt               motion ids, one a line

    A caption with start = end = 0 describes the whole motion; otherwise it
    describes frames ``int(start * fps) : int(end * fps)``, which become a
    sample of their own. Motions and segments outside ``min_length <= T <=
    max_length`` are dropped (the field's ``40 <= T < 200`` for HumanML3D,
    ``24 <= T < 200`` for KIT-ML). Each sample holds all its captions;
    :class:`SampleCaption` picks one and :class:`RandomCropMotion` crops
    (196 frames in the field's recipes).

    Each data info: ``motion`` (``[T, D]`` float32, normalised
    ``(x - mean) / std`` when ``normalize``), ``length`` (T), ``captions``
    (list of dicts from :func:`parse_caption_line`), ``motion_id``
    (``<id>``, or ``<id>#<start>-<end>`` for a segment), ``source_id``.
    ``metainfo`` holds ``motion_format`` (``'humanml3d'``/``'kit'``),
    ``fps``, ``mean`` and ``std`` for decoding generated features (plain
    data: the Runner saves it in checkpoints).

    Args:
        data_root (str): the data set folder.
        split (str): a ``<split>.txt`` in ``data_root`` (``'train'``,
            ``'val'``, ``'test'``, ``'all'``, ...).
        motion_format (str): ``'humanml3d'`` or ``'kit'``.
        min_length, max_length (int, optional): frame limits (inclusive);
            default the format's.
        normalize (bool): normalise with ``Mean.npy``/``Std.npy``.
        motion_dir, text_dir, mean_file, std_file (str): names inside
            ``data_root``.
        pipeline (list): transforms.
        test_mode (bool, optional): default ``split != 'train'``.
    """
    METAINFO = dict(dataset_name='HumanML3D-format')

    def __init__(self, data_root, split='train', motion_format='humanml3d',
                 min_length=None, max_length=None, normalize=True,
                 motion_dir='new_joint_vecs', text_dir='texts',
                 mean_file='Mean.npy', std_file='Std.npy', pipeline=(),
                 test_mode=None, **kwargs):
        self.fmt = get_motion_format(motion_format)
        self.split = split
        self.min_length = self.fmt.min_length if min_length is None \
            else min_length
        self.max_length = self.fmt.max_length if max_length is None \
            else max_length
        if not 2 <= self.min_length <= self.max_length:
            raise ValueError(f'min_length={self.min_length} and max_length='
                             f'{self.max_length} must satisfy 2 <= min_length'
                             ' <= max_length')
        self.normalize = normalize
        self.motion_dir, self.text_dir = motion_dir, text_dir
        if not osp.isdir(data_root):
            raise FileNotFoundError(f'data_root={data_root!r} is not a '
                                    'folder')
        mean = self._load_stat(osp.join(data_root, mean_file), 'mean_file')
        std = self._load_stat(osp.join(data_root, std_file), 'std_file')
        if (std <= 0).any():
            raise ValueError(f'{osp.join(data_root, std_file)} has entries '
                             f'<= 0 at {np.flatnonzero(std <= 0)[:8]}')
        self.mean, self.std = mean, std
        if test_mode is None:
            test_mode = split != 'train'
        super().__init__(ann_file=f'{split}.txt', data_root=data_root,
                         pipeline=list(pipeline), test_mode=test_mode,
                         **kwargs)
        # plain data only: the Runner stores the metainfo in checkpoints,
        # which must load with weights_only=True (set after __init__, which
        # would read a str value as the name of a meta file)
        self._metainfo.update(motion_format=self.fmt.name, fps=self.fmt.fps,
                              mean=mean, std=std)

    def _load_stat(self, path, name):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{name}: {path} does not exist')
        stat = np.load(path).astype(np.float32)
        if stat.shape != (self.fmt.feature_dim, ):
            raise ValueError(f'{name}: {path} has shape {stat.shape}; '
                             f'motion_format={self.fmt.name!r} needs '
                             f'({self.fmt.feature_dim},)')
        return stat

    def _read_captions(self, path):
        if not osp.isfile(path):
            raise FileNotFoundError(f'caption file {path} does not exist')
        with open(path, encoding='utf-8') as f:
            lines = [(i, line) for i, line in enumerate(f, 1)
                     if line.strip()]
        if not lines:
            raise ValueError(f'caption file {path} has no caption')
        return [parse_caption_line(line, f'{path}:{i}') for i, line in lines]

    def _read_motion(self, path, split_file):
        if not osp.isfile(path):
            raise FileNotFoundError(f'motion file {path} (listed in '
                                    f'{split_file}) does not exist')
        motion = np.load(path)
        if motion.ndim != 2 or motion.shape[1] != self.fmt.feature_dim:
            raise ValueError(f'motion file {path} has shape {motion.shape}; '
                             f'motion_format={self.fmt.name!r} needs [T, '
                             f'{self.fmt.feature_dim}]')
        return motion.astype(np.float32)

    def load_data_list(self):
        split_file = self.ann_file
        if not osp.isfile(split_file):
            raise FileNotFoundError(f'split={self.split!r}: {split_file} '
                                    'does not exist')
        with open(split_file) as f:
            ids = [line.strip() for line in f if line.strip()]
        root = self.data_root
        data_list = []
        for mid in ids:
            motion = self._read_motion(
                osp.join(root, self.motion_dir, mid + '.npy'), split_file)
            if self.normalize:
                motion = (motion - self.mean) / self.std
            groups = {}
            for cap in self._read_captions(
                    osp.join(root, self.text_dir, mid + '.txt')):
                groups.setdefault((cap['start'], cap['end']), []).append(cap)
            for (start, end), captions in groups.items():
                if start == end == 0:
                    clip, name = motion, mid
                else:
                    clip = motion[int(start * self.fmt.fps):
                                  int(end * self.fmt.fps)]
                    name = f'{mid}#{start:g}-{end:g}'
                if not self.min_length <= len(clip) <= self.max_length:
                    continue
                data_list.append(dict(
                    motion=np.ascontiguousarray(clip), length=len(clip),
                    captions=captions, motion_id=name, source_id=mid))
        return data_list

    def denormalize(self, motion):
        """Normalised features -> the data set's units (array or tensor)."""
        if not self.normalize:
            return motion
        if isinstance(motion, np.ndarray):
            return motion * self.std + self.mean
        return motion * motion.new_tensor(self.std) + motion.new_tensor(
            self.mean)
