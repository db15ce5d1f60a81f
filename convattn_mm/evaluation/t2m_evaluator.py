"""The standard T2M text-motion evaluator (Guo et al., CVPR 2022).

Three networks, with the parameter names and shapes of the released
``text_mot_match/model/finest.tar`` (a dict with ``'movement_encoder'``,
``'motion_encoder'``, ``'text_encoder'`` state dicts and ``'epoch'``):

* ``movement_encoder``: two ``Conv1d(k=4, s=2, p=1)`` + LeakyReLU(0.2)
  (``main.0``, ``main.3``) and a linear ``out_net``: features without the 4
  foot contacts ``[B, T, D - 4]`` -> ``[B, T // 4, 512]``;
* ``motion_encoder``: ``input_emb`` (linear), a bidirectional GRU
  (``gru``, learned initial state ``hidden [2, 1, 1024]``) and
  ``output_net`` (linear, LayerNorm, LeakyReLU, linear) over the last
  states -> ``[B, 512]``;
* ``text_encoder``: GloVe word vectors (300-d) plus ``pos_emb`` of a
  15-way part-of-speech one-hot, then the same GRU head -> ``[B, 512]``.

Inputs are features normalised with the evaluator's own mean/std (the
``meta/mean.npy``/``std.npy`` shipped beside the checkpoint, not the data
set's ``Mean.npy``/``Std.npy``), lengths in multiples of 4 frames, and
captions as ``word/POS`` tokens mapped by :class:`WordVectorizer` through
the GloVe files ``our_vab_data.npy``, ``our_vab_words.pkl``,
``our_vab_idx.pkl``. No weights ship with this package: the user supplies
the checkpoint.
"""
import os.path as osp
import pickle

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from convattn_mm.compat import checkpoints as compat
from convattn_mm.datasets.humanml3d.formats import get_motion_format

POS_TAGS = ('VERB', 'NOUN', 'DET', 'ADP', 'NUM', 'AUX', 'PRON', 'ADJ', 'ADV',
            'Loc_VIP', 'Body_VIP', 'Obj_VIP', 'Act_VIP', 'Desc_VIP', 'OTHER')
# words whose POS the evaluator replaces by a category of its own
VIP_WORDS = {
    'Loc_VIP': ('left', 'right', 'clockwise', 'counterclockwise',
                'anticlockwise', 'forward', 'back', 'backward', 'up', 'down',
                'straight', 'curve'),
    'Body_VIP': ('arm', 'chin', 'foot', 'feet', 'face', 'hand', 'mouth', 'leg',
                 'waist', 'eye', 'knee', 'shoulder', 'thigh'),
    'Obj_VIP': ('stair', 'dumbbell', 'chair', 'window', 'floor', 'car', 'ball',
                'handrail', 'baseball', 'basketball'),
    'Act_VIP': ('walk', 'run', 'swing', 'pick', 'bring', 'kick', 'put',
                'squat', 'throw', 'hop', 'dance', 'jump', 'turn', 'stumble',
                'stop', 'sit', 'lift', 'lower', 'raise', 'wash', 'stand',
                'kneel', 'stroll', 'rub', 'bend', 'balance', 'flap', 'jog',
                'shuffle', 'lean', 'rotate', 'spin', 'spread', 'climb'),
    'Desc_VIP': ('slowly', 'carefully', 'fast', 'careful', 'slow', 'quickly',
                 'happy', 'angry', 'sad', 'happily', 'angrily', 'sadly'),
}
CHECKPOINT_KEYS = ('movement_encoder', 'motion_encoder', 'text_encoder')


class MovementConvEncoder(nn.Module):
    """``[B, T, C_in]`` -> ``[B, T // 4, C_out]`` (two stride-2 convs)."""

    def __init__(self, in_channels, hidden_channels=512, out_channels=512):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv1d(in_channels, hidden_channels, 4, 2, 1),
            nn.Dropout(0.2), nn.LeakyReLU(0.2),
            nn.Conv1d(hidden_channels, out_channels, 4, 2, 1),
            nn.Dropout(0.2), nn.LeakyReLU(0.2))
        self.out_net = nn.Linear(out_channels, out_channels)

    def forward(self, x):
        return self.out_net(self.main(x.transpose(1, 2)).transpose(1, 2))


class BiGRUEncoder(nn.Module):
    """``[B, L, C_in]`` and lengths ``[B]`` -> ``[B, C_out]``: linear
    embedding, bidirectional GRU from a learned initial state, head over the
    two directions' last states."""

    def __init__(self, in_channels, hidden_size, out_channels):
        super().__init__()
        self.input_emb = nn.Linear(in_channels, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True,
                          bidirectional=True)
        self.output_net = nn.Sequential(
            nn.Linear(2 * hidden_size, hidden_size), nn.LayerNorm(hidden_size),
            nn.LeakyReLU(0.2), nn.Linear(hidden_size, out_channels))
        self.hidden = nn.Parameter(torch.randn(2, 1, hidden_size))

    def forward(self, x, lengths):
        x = self.input_emb(x)
        packed = pack_padded_sequence(x, torch.as_tensor(lengths).cpu(),
                                      batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed, self.hidden.expand(-1, len(x), -1)
                           .contiguous())
        return self.output_net(torch.cat([last[0], last[1]], dim=-1))


class MotionEncoderBiGRU(BiGRUEncoder):
    """Movement latents ``[B, T // 4, 512]`` -> motion embedding."""


class TextEncoderBiGRU(BiGRUEncoder):
    """Word vectors ``[B, L, 300]`` + POS one-hots ``[B, L, 15]`` -> text
    embedding: ``input = word + pos_emb(pos)``."""

    def __init__(self, word_dim=300, pos_dim=len(POS_TAGS), hidden_size=512,
                 out_channels=512):
        super().__init__(word_dim, hidden_size, out_channels)
        self.pos_emb = nn.Linear(pos_dim, word_dim)

    def forward(self, words, pos, lengths):
        return super().forward(words + self.pos_emb(pos), lengths)


class T2MEvaluator(nn.Module):
    """The three encoders; always in eval mode, no gradients.

    Args:
        dim_pose (int): feature size (263 HumanML3D, 251 KIT-ML).
        unit_length (int): frames per movement latent (4).
        Other sizes as the released networks.
    """

    def __init__(self, dim_pose=263, dim_word=300, movement_hidden=512,
                 movement_latent=512, motion_hidden=1024, text_hidden=512,
                 embed_dims=512, unit_length=4):
        super().__init__()
        self.dim_pose, self.unit_length = dim_pose, unit_length
        self.movement_encoder = MovementConvEncoder(
            dim_pose - 4, movement_hidden, movement_latent)
        self.motion_encoder = MotionEncoderBiGRU(movement_latent,
                                                 motion_hidden, embed_dims)
        self.text_encoder = TextEncoderBiGRU(dim_word, len(POS_TAGS),
                                             text_hidden, embed_dims)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode=True):
        return super().train(False)

    @classmethod
    def from_checkpoint(cls, filename, motion_format='humanml3d',
                        map_location='cpu', unit_length=4):
        """Build for ``motion_format`` and load ``finest.tar``'s layout; the
        layer sizes are read from the file (the released ones are the
        defaults of this class).

        Raises:
            FileNotFoundError: no such file.
            KeyError: a network is missing from the file (named).
            ValueError: the file's feature size is not the format's.
            RuntimeError: a parameter is missing or has another shape.
        """
        if not osp.isfile(filename):
            raise FileNotFoundError(f'evaluator checkpoint {filename} does '
                                    'not exist')
        try:
            ckpt = torch.load(filename, map_location=map_location,
                              weights_only=True)
        except pickle.UnpicklingError as err:
            # trusted: the environment variable or compat.trusted_checkpoints()
            if not compat._trusted():
                raise RuntimeError(compat._untrusted_message(filename, err))
            ckpt = compat.load_trusted_checkpoint(filename, map_location)
        missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
        if missing:
            raise KeyError(f'evaluator checkpoint {filename} lacks {missing}; '
                           f'it has {sorted(ckpt)}')
        fmt = get_motion_format(motion_format)
        try:
            move, mot, txt = (ckpt[k] for k in CHECKPOINT_KEYS)
            sizes = dict(
                dim_pose=move['main.0.weight'].shape[1] + 4,
                movement_hidden=move['main.0.weight'].shape[0],
                movement_latent=move['main.3.weight'].shape[0],
                motion_hidden=mot['hidden'].shape[-1],
                text_hidden=txt['hidden'].shape[-1],
                dim_word=txt['pos_emb.weight'].shape[0],
                embed_dims=mot['output_net.3.weight'].shape[0])
        except KeyError as err:
            raise RuntimeError(f'evaluator checkpoint {filename} lacks '
                               f'parameter {err}') from None
        if sizes['dim_pose'] != fmt.feature_dim:
            raise ValueError(
                f'evaluator checkpoint {filename} takes '
                f'{sizes["dim_pose"]}-d features; motion_format='
                f'{fmt.name!r} has {fmt.feature_dim}')
        model = cls(unit_length=unit_length, **sizes)
        for key in CHECKPOINT_KEYS:
            getattr(model, key).load_state_dict(ckpt[key])
        return model

    def save_checkpoint(self, filename, epoch=0):
        """Write the released layout (used by the tests)."""
        torch.save(dict({k: getattr(self, k).state_dict()
                         for k in CHECKPOINT_KEYS}, epoch=epoch), filename)

    @torch.no_grad()
    def encode_motion(self, motion, lengths):
        """Normalised features ``[B, T, D]`` and lengths ``[B]`` (frames,
        T >= length >= unit_length) -> ``[B, 512]``."""
        latents = self.movement_encoder(motion[..., :-4])
        lengths = torch.as_tensor(lengths) // self.unit_length
        return self.motion_encoder(latents, lengths)

    @torch.no_grad()
    def encode_text(self, words, pos, lengths):
        """``[B, L, 300]``, ``[B, L, 15]``, lengths ``[B]`` -> ``[B, 512]``."""
        return self.text_encoder(words, pos, lengths)


class WordVectorizer:
    """``word/POS`` tokens -> GloVe vectors and POS one-hots, from
    ``<glove_dir>/<prefix>_data.npy`` (``[V, 300]``), ``_words.pkl``
    (list of V words) and ``_idx.pkl`` (word -> row). Unknown words take
    the ``unk`` vector and the ``OTHER`` tag; words of :data:`VIP_WORDS`
    take their category's tag.

    The ``.pkl`` files are unpickled: use the files of the evaluator's
    release (or your own), never files from an untrusted source.
    """

    def __init__(self, glove_dir, prefix='our_vab'):
        paths = [osp.join(glove_dir, f'{prefix}_{n}')
                 for n in ('data.npy', 'words.pkl', 'idx.pkl')]
        for path in paths:
            if not osp.isfile(path):
                raise FileNotFoundError(f'GloVe file {path} does not exist')
        self.vectors = np.load(paths[0])
        with open(paths[2], 'rb') as f:
            self.index = pickle.load(f)
        if 'unk' not in self.index:
            raise ValueError(f'{paths[2]} has no "unk" entry')
        self.vip = {w: tag for tag, words in VIP_WORDS.items()
                    for w in words}

    def lookup(self, token):
        """``'walk/VERB'`` -> (``[300]`` vector, ``[15]`` one-hot)."""
        word, _, pos = token.rpartition('/')
        if not word:
            word, pos = pos, 'OTHER'
        onehot = np.zeros(len(POS_TAGS), np.float32)
        if word in self.index:
            vec = self.vectors[self.index[word]]
            pos = self.vip.get(word, pos)
        else:
            vec, pos = self.vectors[self.index['unk']], 'OTHER'
        onehot[POS_TAGS.index(pos if pos in POS_TAGS else 'OTHER')] = 1
        return vec.astype(np.float32), onehot

    def __call__(self, tokens, max_text_len=20):
        """Tokens -> (words ``[max_text_len + 2, 300]``, POS
        ``[max_text_len + 2, 15]``, length): at most ``max_text_len``
        tokens between ``sos`` and ``eos``, padded with ``unk``."""
        tokens = ['sos/OTHER'] + list(tokens)[:max_text_len] + ['eos/OTHER']
        length = len(tokens)
        tokens += ['unk/OTHER'] * (max_text_len + 2 - length)
        words, pos = zip(*(self.lookup(t) for t in tokens))
        return np.stack(words), np.stack(pos), length
