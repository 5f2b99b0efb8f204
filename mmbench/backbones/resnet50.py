"""ResNet50 image encoder for Twitter-15 and Sarcasm.

torchvision ``resnet50`` with ``fc`` replaced by ``Linear(2048, 256)``, as TPAMI-AMSS
``AMSS_IT/ITModel.py`` projects both image and text features to 256. Weights: ``"IMAGENET1K_V2"``
(torchvision's published weights, downloaded to the torch hub cache on first use), a local file
(a torchvision state dict, e.g. ``resnet50-11ad3fa6.pth``), or ``""`` / ``"none"`` for scratch.
``layers`` other than (3, 4, 6, 3) build a shallower Bottleneck ResNet for CPU smoke runs only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

FEATURE_DIM = 256
PUBLISHED = ("IMAGENET1K_V1", "IMAGENET1K_V2")  # torchvision ResNet50_Weights names


def published_weights(name: str):
    """torchvision's ``ResNet50_Weights`` entry (torchvision imported here: 1.5 s off other runs)."""
    from torchvision.models import ResNet50_Weights

    return ResNet50_Weights[name]


def is_scratch(weights: str | None) -> bool:
    return not weights or str(weights).lower() in ("none", "scratch", "false")


def weights_cached(weights: str) -> bool:
    """Whether a published weight name is already in the torch hub cache (no download needed)."""
    url = published_weights(weights).url
    return (Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]).is_file()


class ResNet50Encoder(nn.Module):
    """(B, 3, S, S) -> (B, ``out_dim``): torchvision ResNet50 trunk, global average pool, ``fc``."""

    def __init__(self, weights: str | None = "IMAGENET1K_V2", out_dim: int = FEATURE_DIM, layers=(3, 4, 6, 3)):
        from torchvision.models.resnet import Bottleneck, ResNet

        super().__init__()
        self.net = ResNet(Bottleneck, list(layers))
        if not is_scratch(weights):
            if str(weights) in PUBLISHED:
                state = published_weights(str(weights)).get_state_dict(progress=False)
            else:
                state = torch.load(Path(weights).expanduser(), map_location="cpu", weights_only=True)
            missing, unexpected = self.net.load_state_dict(state, strict=False)
            log.info("ResNet50 weights %s: %d missing, %d unexpected keys", weights, len(missing), len(unexpected))
        self.net.fc = nn.Linear(self.net.fc.in_features, out_dim)
        self.out_dim = out_dim

    def forward(self, x):
        return self.net(x)
