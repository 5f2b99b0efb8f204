"""Small encoders for the embedded ``mfeat`` data.

Both end in 128 features, so shared-head methods (MLA, ReconBoost) work unchanged.
"""

from __future__ import annotations

import torch.nn as nn

from mmbench.backbones.pooling import MaxPool2d


class SmallCNN(nn.Module):
    """Three ``Conv2d(3x3, pad 1)-BN-ReLU`` blocks (32, 64, 128 channels), ``MaxPool2d(2)`` after
    the second, ``AdaptiveAvgPool2d(1)`` -> ``width`` features."""

    def __init__(self, in_channels: int = 1, width: int = 128):
        super().__init__()

        def block(i, o):
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

        self.net = nn.Sequential(
            *block(in_channels, 32),
            *block(32, 64),
            MaxPool2d(2),
            *block(64, width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_dim = width

    def forward(self, x):
        return self.net(x)


class MLP(nn.Module):
    """``Linear(d, width)-ReLU-Linear(width, width)-ReLU``."""

    def __init__(self, in_dim: int, width: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, width), nn.ReLU(inplace=True), nn.Linear(width, width), nn.ReLU())
        self.out_dim = width

    def forward(self, x):
        return self.net(x)
