"""Generate a motion (or a single pose) from a caption with a trained
text-to-motion checkpoint, and render it.

    python tools/text2pose.py CONFIG CKPT \\
        "a person waves with the right hand" --seconds 6 --out wave.gif

Writes ``wave.gif`` (a 3-D stick figure over a ground plane), ``wave.png``
(a contact sheet of evenly spaced frames), ``wave_joints.npy`` (``[T, J,
3]``, the format's unit) and ``wave_features.npy`` (``[T, D]``,
denormalised). ``--frames 1`` (or ``--seconds`` of one frame) gives a
single pose: a PNG of it, no GIF. The checkpoint loads with
``weights_only=True``; the normalisation statistics come from it, so no
data set is needed.
"""
import argparse
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('caption')
    g = p.add_mutually_exclusive_group()
    g.add_argument('--seconds', type=float, default=None,
                   help='length in seconds (default 4)')
    g.add_argument('--frames', type=int, default=None,
                   help='length in frames (1: a single pose)')
    p.add_argument('--out', default='motion.gif',
                   help='output GIF; the PNG and .npy files sit beside it')
    p.add_argument('--guidance-scale', type=float, default=None)
    p.add_argument('--steps', type=int, default=None, help='DDIM steps')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--sheet-frames', type=int, default=8,
                   help='frames on the contact sheet')
    p.add_argument('--device', default='cpu')
    return p.parse_args(argv)


def stick_axes(ax, joints, parents, frame, lim, floor=0.0):
    """Draw frame ``frame`` of ``joints [T, J, 3]`` (y up) as a stick figure
    over the ground plane ``y = floor`` on a 3-D axes."""
    import numpy as np
    ax.cla()
    root = joints[frame, 0]
    cx, cz = root[0], root[2]
    xx, zz = np.meshgrid(np.linspace(cx - lim, cx + lim, 2),
                         np.linspace(cz - lim, cz + lim, 2))
    ax.plot_surface(xx, zz, np.full_like(xx, floor), color='0.85',
                    alpha=0.5)
    trail = joints[:frame + 1, 0]
    ax.plot(trail[:, 0], trail[:, 2], np.full(len(trail), floor), 'c-',
            lw=1)
    for j, p in enumerate(parents):
        if p < 0:
            continue
        seg = joints[frame, [p, j]]
        side = 'tab:red' if j in _LEFT else 'tab:blue'
        ax.plot(seg[:, 0], seg[:, 2], seg[:, 1], '-', color=side, lw=2)
    ax.set_xlim(cx - lim, cx + lim)
    ax.set_ylim(cz - lim, cz + lim)
    ax.set_zlim(floor, floor + 2 * lim)
    ax.set_box_aspect((1, 1, 1))
    ax.set_axis_off()
    ax.view_init(elev=15, azim=-60)


_LEFT = ()


def render(joints, parents, fps, out_gif, out_png, sheet_frames=8,
           left_joints=()):
    """GIF (when more than one frame) and contact-sheet PNG of ``joints
    [T, J, 3]`` (metres, y up)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.animation import FuncAnimation, PillowWriter
    global _LEFT
    _LEFT = tuple(left_joints)
    T = len(joints)
    lim = 0.6 * float(np.ptp(joints[..., 1]) + 0.2)
    picks = np.unique(np.linspace(0, T - 1, min(sheet_frames, T)).round()
                      .astype(int))
    fig = plt.figure(figsize=(2.2 * len(picks), 2.6))
    for i, f in enumerate(picks):
        ax = fig.add_subplot(1, len(picks), i + 1, projection='3d')
        stick_axes(ax, joints, parents, f, lim)
        ax.set_title(f'{f / fps:.2f} s', fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    if T > 1 and out_gif:
        fig = plt.figure(figsize=(4, 4))
        ax = fig.add_subplot(projection='3d')
        anim = FuncAnimation(fig, lambda f: stick_axes(ax, joints, parents,
                                                       f, lim),
                             frames=T, interval=1000 / fps)
        anim.save(out_gif, writer=PillowWriter(fps=min(fps, 20)))
        plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, ROOT)
    import numpy as np
    import torch
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint
    from tqdm import tqdm

    from convattn_mm.datasets.humanml3d import features_to_joints
    from convattn_mm.registry import MODELS

    cfg = Config.fromfile(args.config)
    cfg.model.stats_root = None  # the statistics come from the checkpoint
    model = MODELS.build(cfg.model).to(args.device).eval()
    load_checkpoint(model, args.checkpoint, map_location=args.device,
                    strict=True)
    fmt = model.fmt
    if args.frames is not None:
        frames = args.frames
    else:
        frames = int(round((4.0 if args.seconds is None else args.seconds) *
                           fmt.fps))
    if frames < 1:
        raise SystemExit(f'--frames/--seconds give {frames} frames; need >= 1')
    gen = torch.Generator().manual_seed(args.seed)
    feats = model.generate([args.caption], [frames],
                           guidance_scale=args.guidance_scale,
                           num_steps=args.steps, generator=gen,
                           progress=lambda it: tqdm(it, desc='sampling'))
    feats = model.denormalize(feats)[0].cpu().double().numpy()
    joints = features_to_joints(feats, fmt.name)  # format's unit
    stem = osp.splitext(args.out)[0]
    if osp.dirname(args.out):  # like the other tools: create --out's folder
        os.makedirs(osp.dirname(args.out), exist_ok=True)
    np.save(stem + '_features.npy', feats.astype(np.float32))
    np.save(stem + '_joints.npy', joints.astype(np.float32))
    left = [i for i, n in enumerate(fmt.joint_names) if 'left' in n]
    render(joints * fmt.unit_m, fmt.parents, fmt.fps,
           args.out if frames > 1 else None, stem + '.png',
           args.sheet_frames, left)
    written = [stem + '.png', stem + '_joints.npy', stem + '_features.npy']
    if frames > 1:
        written.insert(0, args.out)
    print('wrote ' + ', '.join(written))
    return written


if __name__ == '__main__':
    main()
