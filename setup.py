import os.path as osp
import runpy

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))
# tools/ and configs/ where `mim` looks (convattn_mm/.mim): links for a
# develop install, copies in wheels and sdists; see tools/misc/mim_extension.py
MIM = runpy.run_path(osp.join(HERE, 'tools', 'misc', 'mim_extension.py'))


def read_version():
    scope = {}
    with open(osp.join(HERE, 'convattn_mm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


mim_mode = MIM['add_mim_extension'](root=HERE)
try:
    setup(
        name='convattn_mm',
        version=read_version(),
        description='Relative-offset attention from convolution to global '
        'attention, for the OpenMMLab 2.x stack',
        long_description=open(osp.join(HERE, 'README.md')).read(),
        long_description_content_type='text/markdown',
        packages=find_packages(exclude=('tests', 'tests.*')),
        python_requires='>=3.8',
        # Ranges the code really needs; the tested pins live in requirements/.
        install_requires=[
            'torch>=2.0',
            'mmengine>=0.8,<1.0',
        ],
        extras_require={
            'mmpretrain': ['mmpretrain>=1.0', 'mmcv-lite>=2.0.0,<2.2.0'],
            'natten': ['natten>=0.20'],
            'tests': ['pytest', 'scikit-learn', 'matplotlib'],
        },
        package_data={
            'convattn_mm': ['ops/csrc/*.cpp'] + MIM['MIM_PACKAGE_DATA']
        },
        include_package_data=True,
        zip_safe=False,
    )
finally:
    if mim_mode == 'copy':  # leave links, not stale copies, in the checkout
        MIM['add_mim_extension'](root=HERE, mode='symlink')
