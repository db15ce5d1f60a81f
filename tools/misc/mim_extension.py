"""``setup.py`` fragment: make ``tools/``, ``configs/`` and ``model-index.yml``
findable by ``mim``.

``mim train|test|run convattn_mm ...`` looks for ``<install>/convattn_mm/
.mim/{tools,configs}``, where ``<install>`` is the distribution's location as
``pkg_resources`` reports it. A wheel install puts the package there; a
legacy develop install (``pip install --no-use-pep517 -e .`` or ``setup.py
develop``) reports the source tree; a PEP 660 editable install reports
site-packages, where the package is not, so mim cannot find it.

:func:`add_mim_extension` fills ``convattn_mm/.mim`` before setuptools runs:
relative symlinks to the repository's folders for a develop/editable
install, real copies when a wheel or sdist is built (so the wheel carries
them as package data). ``setup.py`` loads this file and wraps ``setup()``:

    MIM = runpy.run_path(osp.join(HERE, 'tools', 'misc', 'mim_extension.py'))
    mim_mode = MIM['add_mim_extension'](root=HERE)
    try:
        setup(..., package_data={'convattn_mm': MIM['MIM_PACKAGE_DATA']})
    finally:
        if mim_mode == 'copy':  # leave links, not stale copies, behind
            MIM['add_mim_extension'](root=HERE, mode='symlink')

An sdist also needs ``tools/`` and ``configs/`` in ``MANIFEST.in``.
"""
import os
import os.path as osp
import shutil
import sys

MIM_FOLDERS = ('tools', 'configs')
#: files at the repository root that mim reads from ``.mim`` (``mim list``
#: shows a package only when it has one; ``mim search`` reads it)
MIM_FILES = ('model-index.yml', )
MIM_PACKAGE_DATA = ['.mim/tools/*.py', '.mim/tools/**/*.py',
                    '.mim/configs/**/*.py', '.mim/configs/*/*.py',
                    '.mim/configs/*/metafile.yml', '.mim/model-index.yml']


def add_mim_extension(root=None, package='convattn_mm', mode=None):
    """Fill ``<root>/<package>/.mim`` with ``tools`` and ``configs``.

    Args:
        root (str): the repository root (default: this process's cwd, which
            is where pip and setuptools run ``setup.py``).
        package (str): the package folder.
        mode (str): ``'symlink'``, ``'copy'`` or None to choose from the
            setuptools command in ``sys.argv``: copies for ``bdist_wheel``,
            ``sdist``, ``build``/``build_py``; symlinks for ``develop`` and
            ``editable_wheel``; nothing for anything else (``egg_info``,
            ``--help``).

    Returns:
        str or None: the mode used.
    """
    if mode is None:
        commands = set(sys.argv[1:])
        if commands & {'bdist_wheel', 'sdist', 'build', 'build_py'}:
            mode = 'copy'
        elif commands & {'develop', 'editable_wheel'}:
            mode = 'symlink'
        else:
            return None
    if mode not in ('copy', 'symlink'):
        raise ValueError(f"mode={mode!r}: expected 'copy', 'symlink' or None")
    root = osp.abspath(root or os.getcwd())
    mim = osp.join(root, package, '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in MIM_FOLDERS + MIM_FILES:
        src = osp.join(root, name)
        dst = osp.join(mim, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if not osp.exists(src):
            continue
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim), dst,
                       target_is_directory=osp.isdir(src))
        elif osp.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
                '__pycache__', '*.pyc', 'work_dirs'))
        else:
            shutil.copy2(src, dst)
    return mode


if __name__ == '__main__':  # python tools/misc/mim_extension.py [copy|symlink]
    print(add_mim_extension(mode=sys.argv[1] if len(sys.argv) > 1
                            else 'symlink'))
