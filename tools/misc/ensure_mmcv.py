"""Install ``mmcv-lite`` unless some ``mmcv`` 2.x is already present.

``mmcv-lite`` and the full ``mmcv`` (built by ``make setup-full``) provide the
same ``mmcv`` module; installing one over the other breaks it. A full build is
never replaced by the lite one.
"""
import argparse
import importlib.metadata as md
import shlex
import subprocess
import sys

LITE = 'mmcv-lite==2.1.0'


def installed(dist):
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--pip', default=f'{sys.executable} -m pip')
    args = parser.parse_args()
    full, lite = installed('mmcv'), installed('mmcv-lite')
    if full:
        print(f'mmcv {full} (full build) present: keeping it')
        return
    if lite == LITE.split('==')[1]:
        print(f'mmcv-lite {lite} present')
        return
    subprocess.check_call(shlex.split(args.pip) + ['install', LITE])


if __name__ == '__main__':
    main()
