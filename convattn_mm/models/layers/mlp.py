"""The transformer MLP (feed-forward) on channels-last tokens."""
import torch.nn as nn


class Mlp(nn.Module):
    """``Linear(C, hidden) -> GELU -> Linear(hidden, C)`` on ``[..., C]``."""

    def __init__(self, dims, hidden, drop=0.0):
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dims)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
