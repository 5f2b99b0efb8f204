"""Classification heads shared by several methods."""

from __future__ import annotations

import torch
import torch.nn as nn

from mmbench.results.errors import ConfigError


def xavier_linear(in_dim: int, out_dim: int, init: str = "xavier") -> nn.Linear:
    """``Linear`` with xavier-normal weight and zero bias (GeWu-Lab/OGM-GE ``weight_init``);
    ``init="torch"`` keeps PyTorch's default initialisation."""
    layer = nn.Linear(in_dim, out_dim)
    if init == "xavier":
        nn.init.xavier_normal_(layer.weight)
        nn.init.zeros_(layer.bias)
    elif init != "torch":
        raise ValueError(f"unknown head init {init!r}; choose xavier or torch")
    return layer


class ConcatHead(nn.Module):
    """One linear classifier over the concatenated features (OGM-GE ``models/fusion_modules.py`` ``ConcatFusion``).

    Fused logits ``z = W [phi^1; ...; phi^M] + b``. With ``W = [W_1 | ... | W_M]`` split into
    column blocks of widths ``d_m`` (modality order), the per-modality logits are
    ``z^m = W_m phi^m + b / M`` (``unimodal_bias="split"``, OGM-GE/BalanceBenchmark), so that
    ``sum_m z^m = z`` exactly; ``"full"`` adds the whole bias to each ``z^m``.
    Concatenation and slicing use the same ``modalities`` order.
    """

    def __init__(self, dims, num_classes: int, modalities, unimodal_bias: str = "split", init: str = "xavier"):
        super().__init__()
        if unimodal_bias not in ("split", "full"):
            raise ValueError(f"unknown unimodal_bias {unimodal_bias!r}; choose split or full")
        self.modalities = tuple(modalities)
        self.dims = tuple(int(d) for d in dims)
        self.unimodal_bias = unimodal_bias
        self.fc = xavier_linear(sum(self.dims), num_classes, init)

    def split_logits(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        weights = torch.split(self.fc.weight, self.dims, dim=1)
        scale = 1.0 / len(self.modalities) if self.unimodal_bias == "split" else 1.0
        return {m: feats[m] @ w.t() + self.fc.bias * scale for m, w in zip(self.modalities, weights)}

    def forward(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        fused = self.fc(torch.cat([feats[m] for m in self.modalities], dim=1))
        out = {"fusion": fused}
        out.update(self.split_logits(feats))
        return out


def shared_head_inputs(
    dims: dict[str, int], modalities, proj_dim: int | None, method: str
) -> tuple[nn.ModuleDict | None, int]:
    """(projections, width) in front of a head shared by all modalities (MLA, ReconBoost).

    With ``proj_dim`` set: a ``Linear(d_m, proj_dim)`` per modality and width ``proj_dim``
    (benchmark adaptation for unequal feature sizes; the official codes have none). Without it the
    feature sizes must be equal: no projection, width ``d``; otherwise a ``ConfigError`` naming
    ``method``.
    """
    if proj_dim:
        return nn.ModuleDict({m: nn.Linear(dims[m], proj_dim) for m in modalities}), proj_dim
    sizes = {dims[m] for m in modalities}
    if len(sizes) != 1:
        raise ConfigError(
            f"{method} shares one head across modalities, but the feature sizes differ "
            f"({', '.join(f'{m} {dims[m]}' for m in modalities)}); set method.proj_dim=256"
        )
    return None, sizes.pop()
