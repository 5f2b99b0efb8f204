"""Extra passes a method may make from an epoch hook, without disturbing the run.

``split_pass(ctx, split, fn)`` (``ctx.feature_pass``): one eval-mode, no-grad pass over a named
split (``"train"``, ``"val"`` or ``"heldout"``; never ``"test"``), in a fixed, unshuffled order
over a loader of its own, so that

- BatchNorm running statistics do not move (eval mode; each module's mode is restored after);
- every random stream (python, numpy, torch, CUDA) is as before the pass (saved and restored
  around it: a dataset's augmentation in the main process draws from them);
- the epoch's shuffling is untouched (the run's loaders, their generators and their workers are
  never used: the pass builds an unshuffled loader over the same dataset).

The train split is read with its training transforms (the items the loader trains on, as the
official Diagnosing & Re-learning code reads its train loader); features come back in fp32 on the
CPU with their labels and item indices.

``InitialEncoders`` (``ctx.initial_encoder_state()``): the encoders' weights before the first
training step, re-derived rather than stored: ``build_run`` builds the encoders from the dataset's
factories right after seeding and building the data, so the torch RNG state at that point is a
pure function of the seed, identical in a fresh and in a resumed run. Rebuilding the factories
under that state (in a forked RNG) gives the initial weights again, with no copy in the
checkpoint and no file in the run folder.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from mmbench.benchmark.loaders import EpochLoader, to_device
from mmbench.benchmark.seeding import rng_state, set_rng_state

SPLITS = ("train", "val", "heldout")


def split_loader(ctx, split: str) -> EpochLoader:
    """An unshuffled loader over ``split``'s dataset, batched at ``train.eval_batch_size``."""
    if split not in SPLITS:
        raise ValueError(f"a feature pass reads one of {', '.join(SPLITS)}, not {split!r}")
    run_loader = getattr(ctx, f"{split}_loader")
    if run_loader is None:
        raise ValueError(f"this run has no {split} split to pass over")
    if not isinstance(run_loader, EpochLoader):  # a hand-built context (tests): a list of batches
        return run_loader
    batch = getattr(ctx.train_cfg, "eval_batch_size", None) or run_loader.batch_size
    return run_loader.sequential(batch)


@torch.no_grad()
def split_pass(ctx, split: str, fn=None) -> dict[str, torch.Tensor]:
    """``fn(batch) -> {key: (B, ...) tensor}`` over every batch of ``split`` (default: each
    modality's encoder features), concatenated on the CPU in fp32, with ``"label"`` and
    ``"index"``. Eval mode, no gradient, autocast as evaluation; modes and RNG states restored."""
    model = ctx.model
    modes = {mod: mod.training for mod in model.modules()}
    saved = rng_state()
    if fn is None:

        def fn(batch):
            return {m: model.encoders[m](batch[m]) for m in ctx.modalities}

    out: dict[str, list] = {}
    try:
        model.eval()
        for batch in split_loader(ctx, split):
            batch = to_device(batch, ctx.device)
            with ctx.autocast():
                res = fn(batch)
            res = {**res, "label": batch["label"], "index": batch["index"]}
            for k, v in res.items():
                v = torch.as_tensor(v).detach()
                out.setdefault(k, []).append(v.float().cpu() if v.is_floating_point() else v.cpu())
    finally:
        for mod, mode in modes.items():
            mod.training = mode
        set_rng_state(saved)
    return {k: torch.cat(v) for k, v in out.items()}


class InitialEncoders:
    """The encoders' weights before the first training step, re-derived on demand (module doc)."""

    def __init__(self, factories: dict, rng: torch.Tensor, modalities, device: torch.device):
        self.factories = factories
        self.rng = rng
        self.modalities = tuple(modalities)
        self.device = device

    def state(self) -> dict[str, dict[str, torch.Tensor]]:
        """``{m: state_dict of encoder m at initialisation}`` on the run's device."""
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng)
            encoders = nn.ModuleDict({m: self.factories[m][0]() for m in self.modalities})
        return {
            m: {k: v.detach().to(self.device) for k, v in encoders[m].state_dict().items()}
            for m in self.modalities
        }
