"""A small HumanML3D-format data set from a procedural motion generator.

The generator poses the 22-joint SMPL-like skeleton of
:data:`.formats.SMPL_REST_OFFSETS` by forward kinematics, frame by frame:
walk / run (forward, backward, turning left or right, in a circle; slowly,
at a normal pace or quickly), jump (in place or forward), wave with the left
or right hand, kick with the left or right leg, sit down, stand. A motion
is one or two actions (sometimes after standing still) blended over 0.4 s;
the root height keeps the lowest foot on the floor except in flight.

:func:`write_fixture` writes the data set in exactly the layout of
HumanML3D (or, with ``motion_format='kit'``, KIT-ML: the 21 KIT joints
mapped from the SMPL ones by :data:`.formats.SMPL_TO_KIT`, millimetres,
12.5 fps)::

    root/new_joint_vecs/<id>.npy   features [T - 1, 263] (KIT-ML: 251)
    root/new_joints/<id>.npy       joints [T - 1, 22, 3] decoded from them
    root/texts/<id>.txt            caption#word/POS ...#start#end, per line
    root/Mean.npy, root/Std.npy    over the training split
    root/{train,val,test,all}.txt  motion ids
    root/fixture_labels.json       id -> the generator's actions (not part
                                   of HumanML3D; for class-level tests)

Captions describe the whole motion (``#0.0#0.0``) and, for motions of two
actions or with a standing lead-in, each action (``#start#end`` in seconds).
"""
import json
import os
import os.path as osp

import numpy as np

from .features import features_to_joints, joints_to_features
from .formats import (SMPL_REST_OFFSETS, get_motion_format, smpl_to_kit)

ACTIONS = ('walk', 'run', 'jump', 'wave', 'kick', 'sit')
DIRECTIONS = {'walk': ('forward', 'backward', 'left', 'right', 'circle'),
              'run': ('forward', 'left', 'right', 'circle'),
              'jump': ('forward', 'in_place')}
SPEEDS = ('slowly', 'normal', 'quickly')
SPEED_FACTOR = {'slowly': 0.7, 'normal': 1.0, 'quickly': 1.35}
BLEND_S = 0.4
ARM_DOWN = 1.3          # shoulder angle about z of a relaxed arm (rad)
PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17,
           18, 19)
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 1, 2, 4, 5, 7, 8
SPINE1, L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW = 3, 16, 17, 18, 19
FEET = (7, 8, 10, 11)


# --------------------------------------------------------------------------
# the generator
# --------------------------------------------------------------------------
def _rot(axis, angle):
    """``[T, 3, 3]`` rotations about ``axis`` (0/1/2) by ``angle [T]``."""
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros(angle.shape + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    out[..., axis, axis] = 1
    out[..., i, i], out[..., j, j] = c, c
    out[..., i, j], out[..., j, i] = -s, s
    return out


def _pose(angles):
    """Angles ``[T, 22, 3]`` about x, y, z -> ``R = R_x R_y R_z``
    ``[T, 22, 3, 3]``."""
    return (_rot(0, angles[..., 0]) @ _rot(1, angles[..., 1])
            @ _rot(2, angles[..., 2]))


def forward_kinematics(local, heading, root):
    """Local rotations ``[T, 22, 3, 3]``, heading ``[T]`` and root positions
    ``[T, 3]`` -> joints ``[T, 22, 3]`` (metres) on the SMPL-like skeleton:
    ``G_j = G_p L_j``, ``P_j = P_p + G_p offset_j``, ``G_0 = R_y(h) L_0``."""
    offsets = np.asarray(SMPL_REST_OFFSETS)
    glob = [_rot(1, heading) @ local[:, 0]]
    joints = [root]
    for j in range(1, len(PARENTS)):
        p = PARENTS[j]
        joints.append(joints[p] + glob[p] @ offsets[j])
        glob.append(glob[p] @ local[:, j])
    return np.stack(joints, 1)


def _bump(x):
    """Smooth 0 -> 1 -> 0 over ``x`` in [0, 1] (zero outside)."""
    x = np.clip(x, 0, 1)
    return np.sin(np.pi * x) ** 2


def _ramp(x):
    """Smooth 0 -> 1 over ``x`` in [0, 1]."""
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def _action_channels(action, t, duration):
    """Per-frame channels of one action at local times ``t [T]`` (s):
    Euler angles ``[T, 22, 3]``, body-frame velocity ``[T, 2]`` (forward,
    sideways; m/s), turn rate ``[T]`` (rad/s), flight height ``[T]`` (m)."""
    kind = action['action']
    speed = SPEED_FACTOR[action.get('speed', 'normal')]
    side = 1.0 if action.get('side', 'right') == 'left' else -1.0
    n = len(t)
    ang = np.zeros((n, 22, 3))
    ang[:, L_SHOULDER, 2], ang[:, R_SHOULDER, 2] = -ARM_DOWN, ARM_DOWN
    vel, turn, flight = np.zeros((n, 2)), np.zeros(n), np.zeros(n)
    if kind in ('walk', 'run'):
        run = kind == 'run'
        freq = (1.4 if run else 0.9) * speed
        phase = 2 * np.pi * freq * t
        swing = (0.7 if run else 0.45) * np.sin(phase)
        ang[:, L_HIP, 0], ang[:, R_HIP, 0] = -swing, swing
        knee = 1.1 if run else 0.6
        ang[:, L_KNEE, 0] = knee * np.clip(np.sin(phase - 1.2), 0, None)
        ang[:, R_KNEE, 0] = knee * np.clip(-np.sin(phase - 1.2), 0, None)
        ang[:, L_SHOULDER, 0], ang[:, R_SHOULDER, 0] = swing, -swing
        if run:
            ang[:, L_ELBOW, 1], ang[:, R_ELBOW, 1] = -1.2, 1.2
            ang[:, SPINE1, 0] = 0.25
            flight = 0.05 * np.abs(np.sin(phase))
        direction = action.get('direction', 'forward')
        pace = (3.0 if run else 1.2) * speed
        vel[:, 0] = -pace if direction == 'backward' else pace
        ramp = _ramp(t / 0.5)
        vel[:, 0] *= ramp
        if direction in ('left', 'right'):
            # a quarter turn over the first 1.6 s (the bump integrates to 0.8)
            sign = 1 if direction == 'left' else -1
            turn = sign * (np.pi / 2) * _bump(t / 1.6) / 0.8
        elif direction == 'circle':
            turn = np.full(n, 2 * np.pi / max(duration, 1e-3)) * ramp
    elif kind == 'jump':
        period = 1.3 / speed
        cyc = np.mod(t, period) / period
        crouch = _bump(cyc / 0.45)
        ang[:, L_HIP, 0] = ang[:, R_HIP, 0] = -0.9 * crouch
        ang[:, L_KNEE, 0] = ang[:, R_KNEE, 0] = 1.6 * crouch
        ang[:, L_ANKLE, 0] = ang[:, R_ANKLE, 0] = -0.6 * crouch
        ang[:, SPINE1, 0] = 0.5 * crouch
        ang[:, L_SHOULDER, 0] = ang[:, R_SHOULDER, 0] = (
            -1.2 * _bump((cyc - 0.35) / 0.5))
        air = np.clip((cyc - 0.45) / 0.45, 0, 1)
        flight = 1.2 * air * (1 - air) * (air > 0)
        if action.get('direction') == 'forward':
            vel[:, 0] = 1.6 * (air > 0) * (air < 1)
    elif kind == 'wave':
        raise_arm = _ramp(t / 0.6)
        shoulder = L_SHOULDER if side > 0 else R_SHOULDER
        elbow = L_ELBOW if side > 0 else R_ELBOW
        ang[:, shoulder, 2] = side * (-ARM_DOWN + (ARM_DOWN + 0.5) * raise_arm)
        ang[:, elbow, 2] = side * raise_arm * (
            1.0 + 0.5 * np.sin(2 * np.pi * 1.6 * speed * t))
    elif kind == 'kick':
        period = 1.6 / speed
        cyc = np.mod(t, period) / period
        hip, knee = (L_HIP, L_KNEE) if side > 0 else (R_HIP, R_KNEE)
        ang[:, hip, 0] = -1.3 * _bump(cyc / 0.6)
        ang[:, knee, 0] = 1.2 * _bump(cyc / 0.3)
        ang[:, SPINE1, 0] = -0.2 * _bump(cyc / 0.6)
        ang[:, L_SHOULDER, 0] = ang[:, R_SHOULDER, 0] = (
            0.4 * _bump(cyc / 0.6))
    elif kind == 'sit':
        down = _ramp(t / (1.4 / speed))
        ang[:, L_HIP, 0] = ang[:, R_HIP, 0] = -1.5 * down
        ang[:, L_KNEE, 0] = ang[:, R_KNEE, 0] = 1.5 * down
        ang[:, SPINE1, 0] = 0.35 * down
        ang[:, L_SHOULDER, 0] = ang[:, R_SHOULDER, 0] = -0.4 * down
    elif kind != 'stand':
        raise ValueError(f"action={kind!r} is not supported; choose one of "
                         f"{sorted(ACTIONS + ('stand', ))}")
    return ang, vel, turn, flight


def generate_motion(segments, fps=20.0):
    """Joints ``[T, 22, 3]`` (metres, y up) of ``segments``: a list of
    action dicts (``action``, ``duration`` in s, and ``direction``,
    ``speed``, ``side`` where they apply), played one after another and
    blended over :data:`BLEND_S`. Starts at the origin facing +z."""
    durations = [s['duration'] for s in segments]
    starts = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
    n = int(round(sum(durations) * fps))
    t = np.arange(n) / fps
    ang, vel = np.zeros((n, 22, 3)), np.zeros((n, 2))
    turn, flight = np.zeros(n), np.zeros(n)
    weights = []
    for i, (seg, start) in enumerate(zip(segments, starts)):
        w = np.ones(n)
        if i > 0:
            w *= _ramp((t - start + BLEND_S / 2) / BLEND_S)
        if i < len(segments) - 1:
            w *= 1 - _ramp((t - start - seg['duration'] + BLEND_S / 2)
                           / BLEND_S)
        weights.append(w)
    total = np.sum(weights, 0)
    for seg, start, w in zip(segments, starts, weights):
        local_t = np.clip(t - start, 0, seg['duration'])
        a, v, r, f = _action_channels(seg, local_t, seg['duration'])
        w = w / total
        ang += w[:, None, None] * a
        vel += w[:, None] * v
        turn += w * r
        flight += w * f
    heading = np.cumsum(turn) / fps
    heading -= heading[0]
    sin, cos = np.sin(heading), np.cos(heading)
    step = np.stack([vel[:, 0] * sin + vel[:, 1] * cos,
                     vel[:, 0] * cos - vel[:, 1] * sin], -1) / fps
    root_xz = np.cumsum(step, 0) - step[0]
    root = np.stack([root_xz[:, 0], np.zeros(n), root_xz[:, 1]], -1)
    joints = forward_kinematics(_pose(ang), heading, root)
    # keep the lowest foot joint on the floor, then add the flight height
    lift = -joints[:, FEET, 1].min(1) + flight
    joints[..., 1] += lift[:, None]
    return joints


# --------------------------------------------------------------------------
# captions
# --------------------------------------------------------------------------
# word -> lemma/POS (spaCy's universal tags, as in HumanML3D's token column)
LEXICON = {
    'a': 'a/DET', 'the': 'the/DET', 'person': 'person/NOUN',
    'someone': 'someone/PRON', 'man': 'man/NOUN', 'woman': 'woman/NOUN',
    'his': 'his/PRON', 'her': 'her/PRON', 'is': 'be/AUX',
    'walks': 'walk/VERB', 'walking': 'walk/VERB', 'runs': 'run/VERB',
    'running': 'run/VERB', 'jogs': 'jog/VERB', 'jumps': 'jump/VERB',
    'jumping': 'jump/VERB', 'hops': 'hop/VERB', 'waves': 'wave/VERB',
    'waving': 'wave/VERB', 'raises': 'raise/VERB', 'kicks': 'kick/VERB',
    'kicking': 'kick/VERB', 'sits': 'sit/VERB', 'squats': 'squat/VERB',
    'stands': 'stand/VERB', 'standing': 'stand/VERB', 'turns': 'turn/VERB',
    'takes': 'take/VERB',
    'steps': 'step/NOUN', 'forward': 'forward/ADV',
    'backward': 'backward/ADV', 'backwards': 'backwards/ADV',
    'to': 'to/ADP', 'left': 'left/NOUN', 'right': 'right/NOUN',
    'in': 'in/ADP', 'circle': 'circle/NOUN', 'place': 'place/NOUN',
    'slowly': 'slowly/ADV', 'quickly': 'quickly/ADV', 'fast': 'fast/ADV',
    'up': 'up/ADP', 'and': 'and/CCONJ', 'down': 'down/ADP',
    'with': 'with/ADP', 'hand': 'hand/NOUN', 'arm': 'arm/NOUN',
    'hello': 'hello/INTJ', 'leg': 'leg/NOUN', 'foot': 'foot/NOUN',
    'still': 'still/ADV', 'then': 'then/ADV', 'around': 'around/ADV',
    'out': 'out/ADP', 'on': 'on/ADP', 'ground': 'ground/NOUN',
}


def tokenize(caption):
    """``'a person walks'`` -> ``'a/DET person/NOUN walk/VERB'``."""
    words = caption.lower().replace(',', ' ').split()
    missing = [w for w in words if w not in LEXICON]
    if missing:
        raise KeyError(f'words {missing} of {caption!r} are not in LEXICON')
    return ' '.join(LEXICON[w] for w in words)


_DIRECTION_WORDS = {'forward': 'forward', 'backward': 'backward',
                    'left': 'to the left', 'right': 'to the right',
                    'circle': 'in a circle', 'in_place': 'in place'}
_SPEED_WORDS = {'slowly': ' slowly', 'normal': '', 'quickly': ' quickly'}


def describe(action):
    """Three phrasings (verb phrases) of one action dict."""
    kind = action['action']
    speed = _SPEED_WORDS[action.get('speed', 'normal')]
    where = _DIRECTION_WORDS.get(action.get('direction'), '')
    side = action.get('side', 'right')
    options = {
        'walk': [f'walks {where}{speed}', f'is walking {where}{speed}',
                 f'takes steps {where}{speed}'],
        'run': [f'runs {where}{speed}', f'jogs {where}{speed}',
                f'is running {where}{speed}'],
        'jump': [f'jumps {where}{speed}', f'hops {where}{speed}',
                 f'is jumping up and down {where}'],
        'wave': [f'waves with the {side} hand{speed}',
                 f'raises the {side} arm and waves',
                 f'is waving hello with the {side} hand'],
        'kick': [f'kicks with the {side} leg{speed}',
                 f'kicks out with the {side} foot',
                 f'is kicking with the {side} leg'],
        'sit': [f'sits down{speed}', f'squats down{speed}',
                'sits down on the ground'],
        'stand': ['stands still', 'is standing still', 'stands in place'],
    }[kind]
    return [' '.join(o.split()) for o in options]


def _subjects(rng, n):
    return list(rng.choice(['a person', 'someone', 'a man', 'a woman'], n))


def random_script(rng):
    """A random motion script: a list of action dicts with durations."""
    def action():
        kind = str(rng.choice(ACTIONS))
        out = dict(action=kind, speed=str(rng.choice(SPEEDS)),
                   duration=float(rng.uniform(2.4, 3.6)))
        if kind in DIRECTIONS:
            out['direction'] = str(rng.choice(DIRECTIONS[kind]))
        if kind in ('wave', 'kick'):
            out['side'] = str(rng.choice(['left', 'right']))
        if kind == 'wave':
            out['speed'] = 'normal'
        return out
    kind = rng.integers(3)
    if kind == 0:                       # one action
        return [action()]
    if kind == 1:                       # stand, then one action
        return [dict(action='stand', duration=float(rng.uniform(1.0, 1.6))),
                action()]
    return [action(), action()]         # two actions


def script_captions(script, rng):
    """Caption lines ``caption#tokens#start#end`` of a motion script."""
    lines = []
    phrases = [describe(a) for a in script]
    for i, subject in enumerate(_subjects(rng, 3)):
        text = ' and then '.join(p[i % 3] for p in phrases)
        lines.append((f'{subject} {text}', 0.0, 0.0))
    if len(script) > 1:
        start = 0.0
        for a, p in zip(script, phrases):
            end = start + a['duration']
            if a['action'] != 'stand':
                subject = _subjects(rng, 1)[0]
                lines.append((f'{subject} {p[int(rng.integers(3))]}',
                              round(start, 2), round(end, 2)))
            start = end
    return [f'{c}#{tokenize(c)}#{s}#{e}' for c, s, e in lines]


# --------------------------------------------------------------------------
# the writer
# --------------------------------------------------------------------------
def group_std(features, motion_format):
    """Std per feature, shared within each feature group (the mean of the
    group's per-entry stds, as the data set's script does); zero -> 1."""
    fmt = get_motion_format(motion_format)
    std = features.std(0)
    for sl in fmt.slices.values():
        std[sl] = std[sl].mean()
    std[std < 1e-8] = 1.0
    return std


def write_fixture(root, num_motions=60, motion_format='humanml3d', seed=0,
                  splits=(0.7, 0.15, 0.15)):
    """Write a fixture data set to ``root`` (layout in the module doc).

    Args:
        root (str): output folder (created; existing files are replaced).
        num_motions (int): motions to generate (>= 3).
        motion_format (str): ``'humanml3d'`` (22 joints, 263-d, 20 fps, m)
            or ``'kit'`` (21 joints, 251-d, 12.5 fps, mm).
        seed (int): random seed; the same seed writes the same files.
        splits (tuple[float]): train/val/test fractions.

    Returns:
        dict: id -> the motion's script (also in ``fixture_labels.json``).
    """
    fmt = get_motion_format(motion_format)
    if not isinstance(num_motions, int) or num_motions < 3:
        raise ValueError(f'num_motions={num_motions!r} must be an int >= 3')
    rng = np.random.default_rng(seed)
    for sub in ('new_joint_vecs', 'new_joints', 'texts'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    ids = [f'{i:06d}' for i in range(num_motions)]
    scripts, train_feats = {}, []
    n_train = max(1, int(round(splits[0] * num_motions)))
    n_val = max(1, int(round(splits[1] * num_motions)))
    for k, mid in enumerate(ids):
        script = random_script(rng)
        joints = generate_motion(script, fmt.fps)
        if fmt.name == 'kit':
            joints = smpl_to_kit(joints)
        joints = joints / fmt.unit_m
        feats = joints_to_features(joints, fmt).astype(np.float32)
        np.save(osp.join(root, 'new_joint_vecs', mid + '.npy'), feats)
        np.save(osp.join(root, 'new_joints', mid + '.npy'),
                features_to_joints(feats.astype(np.float64), fmt)
                .astype(np.float32))
        with open(osp.join(root, 'texts', mid + '.txt'), 'w') as f:
            f.write('\n'.join(script_captions(script, rng)) + '\n')
        scripts[mid] = script
        if k < n_train:
            train_feats.append(feats)
    train_feats = np.concatenate(train_feats).astype(np.float64)
    np.save(osp.join(root, 'Mean.npy'),
            train_feats.mean(0).astype(np.float32))
    np.save(osp.join(root, 'Std.npy'),
            group_std(train_feats, fmt).astype(np.float32))
    parts = {'train': ids[:n_train], 'val': ids[n_train:n_train + n_val],
             'test': ids[n_train + n_val:], 'all': ids}
    for name, part in parts.items():
        with open(osp.join(root, name + '.txt'), 'w') as f:
            f.write('\n'.join(part) + '\n')
    with open(osp.join(root, 'fixture_labels.json'), 'w') as f:
        json.dump(scripts, f, indent=1)
    return scripts
