"""Classification heads shared by several methods."""

from __future__ import annotations

import torch
import torch.nn as nn


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
    """One linear classifier over the concatenated features (specs/methods/joint.md §2).

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
