from setuptools import find_packages, setup


def read_version():
    scope = {}
    with open('convattn_mm/version.py') as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='convattn_mm',
    version=read_version(),
    description='Relative-offset attention from convolution to global '
    'attention, for the OpenMMLab 2.x stack',
    long_description=open('README.md').read(),
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
    include_package_data=True,
    zip_safe=False,
)
