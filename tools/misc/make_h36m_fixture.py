"""Write the small Human3.6M-format fixture (a kinematic motion generator
seen by H36M-style cameras; nothing is downloaded) where mmpose's H36M
configs look for the real data set.

    python tools/misc/make_h36m_fixture.py [--out data/h36m] [--frames 300]
        [--cameras 2] [--noise-2d PX] [--seed 0]

Then any H36M lifter config trains on it as is, e.g.
``python tools/train.py configs/pose3d/...h36m.py`` (``data_root`` is
``data/h36m/``). See convattn_mm/datasets/h36m_fixture.py for the format.
"""
import argparse

from convattn_mm.datasets.h36m_fixture import (ACTIONS, TEST_SUBJECTS,
                                               write_h36m_fixture)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='data/h36m')
    p.add_argument('--train-subjects', nargs='+', default=['S1', 'S5', 'S6'])
    p.add_argument('--test-subjects', nargs='+', default=list(TEST_SUBJECTS))
    p.add_argument('--actions', nargs='+', default=list(ACTIONS),
                   choices=ACTIONS)
    p.add_argument('--frames', type=int, default=300,
                   help='frames per sequence (50 fps)')
    p.add_argument('--cameras', type=int, default=2, choices=[1, 2, 3, 4])
    p.add_argument('--noise-2d', type=float, default=None,
                   help='also write 2-D keypoints with this pixel noise')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    paths = write_h36m_fixture(args.out, args.train_subjects,
                               args.test_subjects, args.actions, args.frames,
                               args.cameras, args.noise_2d, args.seed)
    for name, path in paths.items():
        print(f'{name:12s} {args.out}/{path}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
