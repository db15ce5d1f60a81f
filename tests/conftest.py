import warnings

import pytest
import torch

warnings.filterwarnings('ignore', message='.*flex_attention.*')
warnings.filterwarnings('ignore', message='.*MultiScaleDeformableAttention.*')


# Tiny models on a 2-core machine: one thread avoids oversubscription when
# anything else runs (tools tested in subprocesses get OMP_NUM_THREADS=1 from
# the Makefile). Tests of code that splits work over threads ask for the
# `num_threads` fixture below.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(params=[2, 3], ids=lambda n: f'{n}threads')
def num_threads(request):
    """Run the test at 2 threads (what users get by default on two cores)
    and at 3 (an uneven split of most work lists), then restore the count.
    The C++ kernel reads ``torch.get_num_threads()`` on every call."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    try:
        assert torch.get_num_threads() == request.param
        yield request.param
    finally:
        torch.set_num_threads(before)
