"""Write a small procedural text-motion data set in HumanML3D's layout.

    python tools/make_motion_fixture.py data/motion_fixture
    python tools/make_motion_fixture.py data/motion_fixture_kit --format kit

Motions (walk / run / jump / wave / kick / sit, with direction, speed and
side words, several captions each, sub-segment captions) come from
:func:`convattn_mm.datasets.humanml3d.write_fixture`; nothing is downloaded.
The folder then reads with ``type='convattn_mm.HumanML3DDataset'``
(``motion_format='kit'`` for the KIT-ML variant).
"""
import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out', help='output folder')
    parser.add_argument('--num-motions', type=int, default=200,
                        help='motions to generate (default 200)')
    parser.add_argument('--format', default='humanml3d',
                        choices=['humanml3d', 'kit'],
                        help='HumanML3D (22 joints, 263-d, 20 fps, m) or '
                        'KIT-ML (21 joints, 251-d, 12.5 fps, mm)')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from convattn_mm.datasets.humanml3d import write_fixture
    scripts = write_fixture(args.out, num_motions=args.num_motions,
                            motion_format=args.format, seed=args.seed)
    print(f'wrote {len(scripts)} {args.format} motions to {args.out}')


if __name__ == '__main__':
    main()
