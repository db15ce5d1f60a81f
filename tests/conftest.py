import warnings

import pytest
import torch

warnings.filterwarnings('ignore', message='.*flex_attention.*')
warnings.filterwarnings('ignore', message='.*MultiScaleDeformableAttention.*')


# Tiny models on a 2-core machine: one thread avoids oversubscription when
# anything else runs (tools tested in subprocesses get OMP_NUM_THREADS=1 from
# the Makefile).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
