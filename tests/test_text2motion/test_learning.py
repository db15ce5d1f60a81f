"""A small TextToMotion learns the fixture generator's actions.

Five classes (walk, jump, wave, kick, sit) of single-action clips from the
fixture's generator. A nearest-centroid classifier on per-clip feature
statistics, fit on the real clips, labels the generated motions:

* prompted with a class's caption, >= 80 % land in that class (chance 20 %);
* with the empty caption, <= 40 %;
* trained on 48-frame crops, the model samples 300 frames whose jerk stays
  within 1.5x of its in-length samples.
"""
import numpy as np
import torch
from mmengine.structures import BaseDataElement

from convattn_mm.datasets.humanml3d import (features_to_joints,
                                            joints_to_features)
from convattn_mm.datasets.humanml3d.fixture import (DIRECTIONS, SPEEDS,
                                                    describe,
                                                    generate_motion,
                                                    group_std)
from convattn_mm.registry import MODELS

CLASSES = ('walk', 'jump', 'wave', 'kick', 'sit')
FPS = 20.0


def make_clips(per_class, seed=0):
    """Normalised features ``[65, 263]``, labels, captions, mean, std."""
    rng = np.random.default_rng(seed)
    feats, labels, captions = [], [], []
    for c, kind in enumerate(CLASSES):
        for _ in range(per_class):
            a = dict(action=kind, speed=str(rng.choice(SPEEDS)),
                     duration=3.3)
            if kind in DIRECTIONS:
                a['direction'] = str(rng.choice(DIRECTIONS[kind]))
            if kind in ('wave', 'kick'):
                a['side'] = str(rng.choice(['left', 'right']))
            joints = generate_motion([a], FPS)
            feats.append(joints_to_features(joints, 'humanml3d'))
            labels.append(c)
            captions.append('a person ' + describe(a)[int(rng.integers(3))])
    allf = np.concatenate(feats)
    mean, std = allf.mean(0), group_std(allf, 'humanml3d')
    X = [torch.from_numpy(((f - mean) / std).astype(np.float32))
         for f in feats]
    return X, np.array(labels), captions, mean, std


def summary(x):
    """Per-clip descriptor: mean and std over time of the features."""
    return torch.cat([x.mean(0), x.std(0)])


class NearestCentroid:

    def __init__(self, X, y):
        self.centroids = torch.stack([
            torch.stack([summary(X[i]) for i in np.flatnonzero(y == c)])
            .mean(0) for c in range(len(CLASSES))
        ])

    def __call__(self, xs):
        d = torch.stack([summary(x) for x in xs])
        return torch.cdist(d, self.centroids).argmin(1).numpy()


def build(embed_dims=64):
    return MODELS.build(dict(
        type='convattn_mm.TextToMotion',
        text_encoder=dict(type='convattn_mm.HashedWordEncoder',
                          embed_dims=embed_dims, vocab_size=256,
                          num_layers=1, num_heads=4),
        denoiser=dict(type='convattn_mm.MotionDenoiser',
                      embed_dims=embed_dims, depth=3, num_heads=4,
                      kernel_size=9, global_every=3),
        num_train_timesteps=100, num_sample_steps=10, guidance_scale=2.5,
        cond_drop_prob=0.15))


def train(model, X, captions, iters, crop=48, batch=32, lr=2e-3, seed=0):
    """AdamW on random ``crop``-frame windows; returns the losses."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iters, lr / 20)
    losses = []
    model.train()
    for _ in range(iters):
        idx = rng.integers(len(X), size=batch)
        inp = torch.stack([
            X[i][s:s + crop] for i in idx
            for s in [int(rng.integers(len(X[i]) - crop + 1))]
        ])
        samples = [BaseDataElement(metainfo=dict(caption=captions[i]))
                   for i in idx]
        loss = model.loss(inp, samples, torch.full((batch, ), crop))['loss']
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    return losses


def prompts():
    out = []
    for kind in CLASSES:
        a = dict(action=kind, side='right', speed='normal',
                 direction='forward' if kind in DIRECTIONS else None)
        out.append('a person ' + describe(a)[0])
    return out


def jerk(x, mean, std):
    """Mean joint jerk (m/s^3) of normalised features ``[T, 263]``."""
    f = x.double() * torch.from_numpy(std) + torch.from_numpy(mean)
    j = features_to_joints(f, 'humanml3d')
    return float((j.diff(n=3, dim=-3) * FPS**3).norm(dim=-1).mean())


def test_learning_smoke():
    """A few iterations: the loss falls and 300 frames sample."""
    X, y, caps, mean, std = make_clips(2)
    model = build(embed_dims=32)
    losses = train(model, X, caps, iters=12, batch=8)
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    model.eval()
    x = model.generate(prompts()[:1], [300], num_steps=3)
    assert x.shape == (1, 300, 263) and torch.isfinite(x).all()
    assert np.isfinite(jerk(x[0], mean, std))


# about 1 min on one thread, so it runs in `make test`
def test_prompted_classes_and_long_samples():
    X, y, caps, mean, std = make_clips(10)
    classify = NearestCentroid(X, y)
    assert (classify(X) == y).mean() >= 0.9  # the classifier itself works
    model = build()
    train(model, X, caps, iters=150)
    model.eval()
    n = 8
    captions = [p for p in prompts() for _ in range(n)]
    target = np.repeat(np.arange(len(CLASSES)), n)
    g = torch.Generator().manual_seed(1)
    gen = model.generate(captions, [60] * len(captions), generator=g)
    acc = (classify(list(gen)) == target).mean()
    empty = model.generate([''] * len(captions), [60] * len(captions),
                           generator=g, guidance_scale=1.0)
    acc_empty = (classify(list(empty)) == target).mean()
    print(f'prompted accuracy {acc:.3f}, empty caption {acc_empty:.3f}')
    assert acc >= 0.8
    assert acc_empty <= 0.4
    short = model.generate(prompts(), [60] * 5, generator=g)
    long = model.generate(prompts(), [300] * 5, generator=g)
    j_short = np.mean([jerk(x, mean, std) for x in short])
    j_long = np.mean([jerk(x, mean, std) for x in long])
    print(f'jerk: 60 frames {j_short:.1f}, 300 frames {j_long:.1f} m/s^3')
    assert j_long <= 1.5 * j_short
