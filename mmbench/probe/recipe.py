"""The one linear-probe recipe, the same for every method and run.

Features are the frozen encoders' outputs (``restore.extract_features``). Each probe is a
multinomial logistic regression ``Linear(D, K)``: features standardised with the train split's
mean and std (std below ``1e-6`` counts as 1), weights and bias initialised to zero (the loss is
convex, so zero is a fixed starting point that needs no RNG), Adam on the mean cross-entropy
(plus ``weight_decay``, L2 through Adam as torch applies it) for ``epochs`` passes over train in
mini-batches of ``batch_size``, shuffled by a ``torch.Generator`` seeded with ``seed`` (the same
permutations for every probe). After every epoch the probe is scored on val; the epoch with the
highest val accuracy (the earliest on ties) is kept, and its val and test metrics are reported.
The fit runs on the CPU with ``threads`` intra-op threads (1: the same floats everywhere, and on a
busy 2-core machine 25x faster than two threads, BENCHMARKS.md).

The recipe's fields go into ``probe.json`` with their hash, so probes with different recipes are
never read as one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

RECIPE_VERSION = 1


@dataclass(frozen=True)
class ProbeRecipe:
    optimizer: str = "adam"
    lr: float = 1e-2
    weight_decay: float = 1e-4
    epochs: int = 100
    batch_size: int = 256
    seed: int = 0
    init: str = "zeros"
    standardise: str = "train_mean_std"
    select: str = "val_acc_earliest"
    threads: int = 1
    version: int = RECIPE_VERSION

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """16 hex digits of the sha256 of the recipe as canonical JSON."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


DEFAULT_RECIPE = ProbeRecipe()
