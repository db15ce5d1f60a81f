import pytest

from .lifting import FIXTURE


@pytest.fixture(scope='session')
def h36m(tmp_path_factory):
    """The H36M-format fixture, written once per session: ``(data_root,
    paths)``."""
    from convattn_mm.datasets.h36m_fixture import write_h36m_fixture
    root = tmp_path_factory.mktemp('h36m')
    return str(root), write_h36m_fixture(str(root), **FIXTURE)
