"""Rewrite an old (unsafe) mmengine checkpoint as one that loads with
``torch.load(..., weights_only=True)``.

Only for files from a source you trust: the input is read with full pickle.

    python tools/misc/upgrade_checkpoint.py old.pth new.pth
    mim run convattn_mm upgrade_checkpoint old.pth new.pth
"""
import argparse

from convattn_mm import compat


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.
                                     RawDescriptionHelpFormatter)
    parser.add_argument('src', help='trusted old checkpoint')
    parser.add_argument('dst', help='where to write the plain checkpoint')
    args = parser.parse_args(argv)
    compat.upgrade_checkpoint(args.src, args.dst)
    print(f'wrote {args.dst} (loads with weights_only=True)')


if __name__ == '__main__':
    main()
