"""``TextToMotion``: text-conditioned motion diffusion (x0-prediction).

Training (DDPM): for a normalised motion ``x0`` of ``L`` valid frames, a
random step ``t`` and noise ``ε``, ``x_t = √ᾱ_t x0 + √(1-ᾱ_t) ε``; the loss
is ``mean over valid frames of ‖denoiser(x_t, t, text) - x0‖²``. With
probability ``cond_drop_prob`` the caption is replaced by ``''`` (the
unconditional model of classifier-free guidance).

Sampling (DDIM, ``num_sample_steps`` steps, deterministic): at each step
``x̂0 = x̂0(∅) + w (x̂0(text) - x̂0(∅))`` with guidance scale ``w``. The
schedulers are ``diffusers``' ``DDPMScheduler`` / ``DDIMScheduler`` with
``prediction_type='sample'`` (imported when the model is built).
"""
import os.path as osp

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.structures import BaseDataElement
from torch.nn.utils.rnn import pad_sequence

from convattn_mm.datasets.humanml3d.formats import get_motion_format
from convattn_mm.registry import MODELS, build_module


@MODELS.register_module()
class MotionDataPreprocessor(BaseDataPreprocessor):
    """Pads the variable-length motions of a ``pseudo_collate`` batch.

    ``inputs``: a list of ``[T_i, D]`` tensors (or one ``[B, T, D]``
    tensor) -> ``inputs [B, max T_i, D]`` (zeros after each motion) and
    ``lengths [B]`` (long).
    """

    def forward(self, data, training=False):
        data = self.cast_data(data)
        inputs = data['inputs']
        if isinstance(inputs, torch.Tensor):
            lengths = torch.full((inputs.shape[0], ), inputs.shape[1],
                                 dtype=torch.long, device=inputs.device)
        else:
            if not len(inputs):
                raise ValueError('inputs: an empty list of motions (pass a '
                                 '[0, T, D] tensor for an empty batch)')
            lengths = torch.tensor([len(x) for x in inputs],
                                   device=self.device)
            inputs = pad_sequence(list(inputs), batch_first=True)
        return dict(inputs=inputs, data_samples=data.get('data_samples'),
                    lengths=lengths)


def _make_schedulers(num_train_timesteps, beta_schedule):
    try:
        from diffusers import DDIMScheduler, DDPMScheduler
    except ImportError as e:
        raise ImportError('TextToMotion needs diffusers (pip install '
                          'diffusers; listed in requirements/base.txt)') from e
    kwargs = dict(num_train_timesteps=num_train_timesteps,
                  beta_schedule=beta_schedule, prediction_type='sample',
                  clip_sample=False)
    return DDPMScheduler(**kwargs), DDIMScheduler(**kwargs)


@MODELS.register_module()
class TextToMotion(BaseModel):
    """Text-to-motion diffusion model (module docstring).

    Args:
        text_encoder (dict): a text encoder config (``HashedWordEncoder``,
            ``CLIPTextEncoder``).
        denoiser (dict): a ``MotionDenoiser`` config; ``in_dims`` and
            ``text_dims`` are filled from ``motion_format`` and the encoder.
        motion_format (str): ``'humanml3d'`` or ``'kit'``.
        stats_root (str, optional): folder with ``Mean.npy`` / ``Std.npy``
            to denormalise generated motions; stored in the checkpoint
            (buffers ``mean``, ``std``), so sampling needs no data set.
        num_train_timesteps (int), beta_schedule (str): the DDPM schedule.
        num_sample_steps (int): DDIM steps when sampling.
        guidance_scale (float): classifier-free guidance ``w`` (1: none).
        cond_drop_prob (float): caption dropout in training.
        data_preprocessor (dict): default ``MotionDataPreprocessor``.
    """

    def __init__(self, text_encoder, denoiser, motion_format='humanml3d',
                 stats_root=None, num_train_timesteps=1000,
                 beta_schedule='squaredcos_cap_v2', num_sample_steps=50,
                 guidance_scale=2.5, cond_drop_prob=0.1,
                 data_preprocessor=None, init_cfg=None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='convattn_mm.MotionDataPreprocessor')
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        if not 0 <= cond_drop_prob < 1:
            raise ValueError(f'cond_drop_prob={cond_drop_prob} must be in '
                             f'[0, 1)')
        if num_sample_steps < 1 or num_sample_steps > num_train_timesteps:
            raise ValueError(
                f'num_sample_steps={num_sample_steps} must be in [1, '
                f'num_train_timesteps={num_train_timesteps}]')
        self.fmt = get_motion_format(motion_format)
        self.text_encoder = build_module(text_encoder)
        self.denoiser = build_module(denoiser, in_dims=self.fmt.feature_dim,
                                     text_dims=self.text_encoder.out_dims)
        self.num_sample_steps = num_sample_steps
        self.guidance_scale, self.cond_drop_prob = guidance_scale, \
            cond_drop_prob
        self.train_scheduler, self.sample_scheduler = _make_schedulers(
            num_train_timesteps, beta_schedule)
        D = self.fmt.feature_dim
        self.register_buffer('mean', torch.zeros(D))
        self.register_buffer('std', torch.ones(D))
        if stats_root is not None:
            for name in ('mean', 'std'):
                path = osp.join(stats_root, name.capitalize() + '.npy')
                if not osp.exists(path):
                    raise ValueError(f'stats_root={stats_root!r} has no '
                                     f'{osp.basename(path)}')
                value = torch.from_numpy(np.load(path).astype(np.float32))
                if value.shape != (D, ):
                    raise ValueError(f'{path}: shape {tuple(value.shape)}, '
                                     f'expected ({D},) for {self.fmt.name}')
                getattr(self, name).copy_(value)

    # ------------------------------------------------------------- helpers
    def denormalize(self, motion):
        return motion * self.std + self.mean

    def predict_x0(self, x_t, timesteps, text, lengths):
        return self.denoiser(x_t, timesteps, text, lengths)

    @torch.no_grad()
    def generate(self, captions, lengths, guidance_scale=None,
                 num_steps=None, generator=None, progress=None):
        """Sample normalised motions.

        Args:
            captions (list[str]): B captions (``''`` = unconditional).
            lengths (list[int] | Tensor): frames per sample.
            guidance_scale (float): default the model's.
            num_steps (int): DDIM steps, default ``num_sample_steps``.
            generator (torch.Generator): for the initial noise.
            progress (callable): wraps the step iterator (e.g. ``tqdm``).

        Returns:
            ``[B, max(lengths), D]`` (zeros past each length).
        """
        w = self.guidance_scale if guidance_scale is None else guidance_scale
        lengths = torch.as_tensor(lengths, device=self.mean.device).long()
        B, T = len(captions), int(lengths.max())
        if len(lengths) != B:
            raise ValueError(f'{len(lengths)} lengths for {B} captions')
        x = torch.randn(B, T, self.fmt.feature_dim, generator=generator,
                        device='cpu').to(self.mean.device)
        guided = w != 1.0
        text = self.text_encoder(list(captions) + [''] * B if guided
                                 else list(captions))
        lens2 = torch.cat([lengths, lengths]) if guided else lengths
        sched = self.sample_scheduler
        sched.set_timesteps(num_steps or self.num_sample_steps)
        steps = sched.timesteps
        for t in (progress(steps) if progress else steps):
            tt = torch.full((len(lens2), ), int(t), device=x.device)
            xin = torch.cat([x, x]) if guided else x
            x0 = self.predict_x0(xin, tt, text, lens2)
            if guided:
                cond, uncond = x0.chunk(2)
                x0 = uncond + w * (cond - uncond)
            x = sched.step(x0, t, x).prev_sample
        valid = torch.arange(T, device=x.device)[None] < lengths[:, None]
        return x * valid[..., None]

    # ------------------------------------------------------------- modes
    def forward(self, inputs, data_samples=None, mode='tensor', lengths=None):
        if lengths is None:
            lengths = torch.full((inputs.shape[0], ), inputs.shape[1],
                                 dtype=torch.long, device=inputs.device)
        if mode == 'loss':
            return self.loss(inputs, data_samples, lengths)
        if mode == 'predict':
            return self.predict(inputs, data_samples, lengths)
        if mode == 'tensor':
            captions = [s.caption for s in data_samples]
            return self.generate(captions, lengths)
        raise ValueError(f"mode={mode!r}: expected 'loss', 'predict' or "
                         f"'tensor'")

    def loss(self, inputs, data_samples, lengths):
        B = inputs.shape[0]
        captions = [
            '' if float(torch.rand(())) < self.cond_drop_prob else s.caption
            for s in data_samples
        ]
        text = self.text_encoder(captions)
        noise = torch.randn_like(inputs)
        t = torch.randint(0, self.train_scheduler.config.num_train_timesteps,
                          (B, ), device=inputs.device)
        x_t = self.train_scheduler.add_noise(inputs, noise, t)
        x0 = self.predict_x0(x_t, t, text, lengths)
        valid = (torch.arange(inputs.shape[1], device=inputs.device)[None] <
                 lengths[:, None]).to(inputs.dtype)
        err = F.mse_loss(x0, inputs, reduction='none').mean(-1)
        return dict(loss=(err * valid).sum() / valid.sum())

    def predict(self, inputs, data_samples, lengths):
        """Generate one motion per caption at the real motion's length;
        each data sample gains ``pred_motion`` / ``gt_motion`` (``[L, D]``,
        denormalised) and ``pred_length`` / ``gt_length``."""
        captions = [s.caption for s in data_samples]
        motion = self.denormalize(self.generate(captions, lengths))
        gt = self.denormalize(inputs)
        out = []
        for i, s in enumerate(data_samples):
            L = int(lengths[i])
            s = s if isinstance(s, BaseDataElement) else BaseDataElement(
                metainfo=dict(s))
            s.pred_motion = motion[i, :L].cpu()
            s.gt_motion = gt[i, :L].cpu()
            s.pred_length = s.gt_length = L
            out.append(s)
        return out
