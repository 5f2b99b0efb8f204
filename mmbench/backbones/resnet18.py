"""ResNet18 encoders of the audio-visual datasets (specs/datasets.md §1.7).

GeWu-Lab/OGM-GE_CVPR2022 ``models/backbone.py`` (used unchanged by AUG, BSS, AMSS): torchvision's
ResNet18 layout (BasicBlock [2, 2, 2, 2], ``conv1 = Conv2d(c, 64, 7, 2, 3)``, max-pool, no fc),
trained from scratch.

- ``AudioResNet18``: one input channel, ``(B, 1, F, T)`` -> layer4 -> ``adaptive_avg_pool2d`` -> 512.
- ``FrameResNet18``: three channels; ``(B, 3, T, S, S)`` is folded to ``(B*T, 3, S, S)``, and the
  layer4 maps ``(B, 512, T, h, w)`` are averaged by ``adaptive_avg_pool3d`` (the mean over time
  and space) -> 512.

``width`` (64 in the paper) scales every stage (w, 2w, 4w, 8w); the ``smoke`` data preset uses a
narrow one so tests run on CPU. Both encoders implement ``mmbench.backbones.staged.StagedEncoder``
(``stem``, ``stages``, ``per_sample``, ``from_per_sample``, ``pool``, ``stage_widths``) for
methods that fuse between stages; their ``forward`` is that composition. Init is OGM-GE's ``weight_init``: conv
``kaiming_normal_(mode="fan_out", nonlinearity="relu")``, BatchNorm weight 1 and bias 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.backbones.pooling import MaxPool2d


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18Trunk(nn.Module):
    """conv1 .. layer4 of ResNet18 (no pooling, no fc); ``out_dim = 8 * width``."""

    def __init__(self, in_channels: int, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = MaxPool2d(3, 2, 1)  # nn.MaxPool2d numbers, faster on CPU
        widths = [width, 2 * width, 4 * width, 8 * width]
        layers, inplanes = [], width
        for i, planes in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes)))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.out_dim = widths[-1]
        self.stage_widths = tuple(widths)
        init_weights(self)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def stem_layer1(self, x):
        """Stage 1: conv1, bn1, relu, max-pool, layer1 (torchvision ``ResNet._forward_impl``)."""
        return self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))

    def stages(self) -> tuple:
        return (self.stem_layer1, self.layer2, self.layer3, self.layer4)


def init_weights(module: nn.Module) -> None:
    """OGM-GE ``weight_init`` for the convolutional trunk."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class AudioResNet18(nn.Module):
    """Spectrogram encoder: ``(B, 1, F, T)`` -> ``(B, 8 * width)``."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.trunk = ResNet18Trunk(1, width)
        self.out_dim = self.trunk.out_dim
        self.stage_widths = self.trunk.stage_widths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # (B, F, T), as the official loaders return it
            x = x.unsqueeze(1)
        return torch.flatten(F.adaptive_avg_pool2d(self.trunk(x), 1), 1)

    # -------------------------------------------------------------- StagedEncoder
    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1) if x.dim() == 3 else x

    def stages(self) -> tuple:
        return self.trunk.stages()

    def per_sample(self, h: torch.Tensor, batch_size: int) -> torch.Tensor:
        return h  # (B, C, F', T')

    def from_per_sample(self, u: torch.Tensor) -> torch.Tensor:
        return u

    def pool(self, h: torch.Tensor, batch_size: int) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)


class FrameResNet18(nn.Module):
    """Frame encoder: ``(B, 3, T, S, S)`` -> frames folded into the batch -> mean over time and
    space of layer4 -> ``(B, 8 * width)``."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.trunk = ResNet18Trunk(3, width)
        self.out_dim = self.trunk.out_dim
        self.stage_widths = self.trunk.stage_widths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = self.trunk(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
        _, d, hh, ww = y.shape
        y = y.view(b, t, d, hh, ww).permute(0, 2, 1, 3, 4)
        return torch.flatten(F.adaptive_avg_pool3d(y, 1), 1)

    # -------------------------------------------------------------- StagedEncoder
    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, S, S)`` -> frames folded into the batch, ``(B*T, 3, S, S)``."""
        b, c, t, h, w = x.shape
        return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)

    def stages(self) -> tuple:
        return self.trunk.stages()

    def per_sample(self, h: torch.Tensor, batch_size: int) -> torch.Tensor:
        """``(B*T, C, h, w)`` -> ``(B, C, T, h, w)`` (a view)."""
        bt, d, hh, ww = h.shape
        return h.view(batch_size, bt // batch_size, d, hh, ww).permute(0, 2, 1, 3, 4)

    def from_per_sample(self, u: torch.Tensor) -> torch.Tensor:
        b, d, t, hh, ww = u.shape
        return u.permute(0, 2, 1, 3, 4).reshape(b * t, d, hh, ww)

    def pool(self, h: torch.Tensor, batch_size: int) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool3d(self.per_sample(h, batch_size), 1), 1)
