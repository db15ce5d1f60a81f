import re

import pytest

from convattn_mm.ops.windows import check_odd_kernel


def test_check_odd_kernel_broadcasts_and_keeps_global():
    assert check_odd_kernel(3, 2) == (3, 3)
    assert check_odd_kernel((5, 'global'), 2) == (5, 'global')
    assert check_odd_kernel('global', 3) == ('global', ) * 3


def test_check_odd_kernel_names_the_parameter_axis_and_what_is_allowed():
    with pytest.raises(ValueError, match=re.escape(
            "kernel_size=(3, 4): window sizes must be odd (got 4 on axis 1); "
            "kernel_size=(3, 4): window sizes must be odd or 'global'")):
        check_odd_kernel((3, 4), 2)
    with pytest.raises(ValueError, match=re.escape(
            'stage.kernel=6: window sizes must be odd (got 6 on axis 0); '
            'stage.kernel=6 must be an odd positive int')):
        check_odd_kernel(6, 1, 'stage.kernel', allow_global=False)
    with pytest.raises(TypeError, match=re.escape(
            "k='global': each entry must be a positive int")):
        check_odd_kernel('global', 2, 'k', allow_global=False)
    with pytest.raises(ValueError, match=re.escape(
            "k=0: each entry must be a positive int or 'global'")):
        check_odd_kernel(0, 2, 'k')
