import warnings

import pytest
import torch

warnings.filterwarnings('ignore', message='.*flex_attention.*')
warnings.filterwarnings('ignore', message='.*MultiScaleDeformableAttention.*')


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
