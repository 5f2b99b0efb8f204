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

import torch

from mmbench.benchmark.loaders import EpochLoader, PlannedEpoch
from mmbench.methods.plan import ItemPlan

__all__ = ["ItemPlan", "planned_loader", "train_positions"]


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
