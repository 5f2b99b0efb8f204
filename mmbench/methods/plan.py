"""``ItemPlan``: the items of one epoch a method asks the harness to train (a list of train
positions, each with the modalities it keeps), for sample-level modality valuation's extra
single-modality copies. The harness side (shuffling, batching, the ``keep`` mask, mapping a batch's
``index`` back to positions) is ``mmbench.benchmark.plan``."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ItemPlan:
    """``positions`` (n,) long: train positions, repeats allowed; ``keep`` (n, M) bool."""

    positions: torch.Tensor
    keep: torch.Tensor

    @classmethod
    def build(cls, items, modalities) -> ItemPlan:
        """From ``[(position, kept modalities), ...]``."""
        positions = torch.tensor([int(p) for p, _ in items], dtype=torch.long)
        keep = torch.tensor([[m in kept for m in modalities] for _, kept in items], dtype=torch.bool)
        return cls(positions, keep.reshape(len(items), len(modalities)))

    def validate(self, n_train: int, n_modalities: int) -> None:
        if self.positions.dim() != 1 or self.keep.shape != (len(self.positions), n_modalities):
            raise ValueError(f"an item plan needs positions (n,) and keep (n, {n_modalities})")
        if len(self.positions) and (int(self.positions.min()) < 0 or int(self.positions.max()) >= n_train):
            raise ValueError(f"an item plan refers to a train position outside 0..{n_train - 1}")

    def state_dict(self) -> dict:
        return {"positions": self.positions.clone(), "keep": self.keep.clone()}

    @classmethod
    def from_state(cls, state: dict | None) -> ItemPlan | None:
        return None if state is None else cls(state["positions"], state["keep"])
