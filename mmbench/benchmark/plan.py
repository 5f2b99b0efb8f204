"""Per-epoch item plans: a method may train an epoch on a list of (train position, kept
modalities) instead of the plain training set (sample-level modality valuation's extra
single-modality copies).

``Method.item_plan(ctx)`` returns ``None`` (the plain loader) or an ``ItemPlan`` for the epoch
about to train; the harness (``planned_loader``) shuffles its items with the epoch's seeded
generator, batches them at ``train.batch_size`` and adds ``batch["keep"]``, a (B, M) bool tensor
in modality order. The plan belongs to the method's state (``state_dict``), so a resumed run
trains the same items.

Positions: a train position p is the p-th item of the run's training set, the order of
``ctx.feature_pass("train")`` (its p-th row), after any held-out carve. A batch's ``index`` is the
dataset's item id, ``ctx.train_loader.dataset.indices[p]`` for position p (the held-out carve
removes items, so ids and positions differ there); ``train_positions(ctx, index)`` maps back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmbench.benchmark.loaders import EpochLoader, PlannedEpoch


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


def planned_loader(loader: EpochLoader, plan: ItemPlan | None, n_modalities: int):
    """The epoch's training batches: ``loader`` itself without a plan, else the plan's epoch
    (call after ``loader.set_epoch``)."""
    if plan is None:
        return loader
    plan.validate(len(loader.dataset), n_modalities)
    return PlannedEpoch(loader, plan.positions, plan.keep)


def train_positions(ctx, index: torch.Tensor) -> torch.Tensor:
    """Train positions of the dataset item ids ``index`` (a batch's ``index``)."""
    ids = torch.as_tensor(ctx.train_loader.dataset.indices)
    lookup = {int(i): p for p, i in enumerate(ids.tolist())}
    return torch.tensor([lookup[int(i)] for i in index.tolist()], dtype=torch.long)
