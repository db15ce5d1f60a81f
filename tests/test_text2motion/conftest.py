import pytest

from convattn_mm.datasets.humanml3d import write_fixture


@pytest.fixture(scope='package')
def humanml3d_root(tmp_path_factory):
    """A 24-motion HumanML3D-format fixture (written once per session)."""
    root = str(tmp_path_factory.mktemp('humanml3d'))
    write_fixture(root, num_motions=24, seed=0)
    return root


@pytest.fixture(scope='package')
def kit_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('kit'))
    write_fixture(root, num_motions=8, motion_format='kit', seed=1)
    return root
