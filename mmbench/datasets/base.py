"""The ``DatasetSpec`` interface (docs/adding-a-dataset.md) and shared dataset helpers.

A dataset module registers one ``DatasetSpec``. Items of ``build()`` are dicts
``{"<modality>": Tensor, ..., "label": int, "index": int}``; the built dataset is a
``BuiltDataset``, which declares ``labels`` (one int per item, so the harness can carve
stratified slices such as G-Blend's held-out set without knowing the dataset) and what else the
harness may use. Datasets never know about methods.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from mmbench.results.errors import DataError


@dataclass(frozen=True)
class Problem:
    """One finding of ``check(root)``: ``level`` is ``"error"`` (blocks training) or ``"warn"``.

    ``kind`` tags findings that ``mmbench data check --strict`` turns into errors: ``"count"``
    for split sizes, class counts and fingerprints that differ from the published ones."""

    level: str
    message: str
    kind: str = ""

    def __str__(self) -> str:
        return f"{self.level}: {self.message}"


EncoderFactory = Callable[[], nn.Module]


class BuiltDataset(Dataset):
    """The base of what ``DatasetSpec.build`` returns: a torch ``Dataset`` of item dicts that
    declares what the harness may use (``mmbench.benchmark.trainer`` and ``loaders`` read these
    attributes, never probe for them).

    - ``labels``: one int per item (stratified carves, G-Blend's held-out split);
    - ``indices``: each item's index in the dataset's full index (hashed into the record's split
      fingerprints), or None;
    - ``dropped``: reason -> count of items left out (missing media), recorded with the sizes;
    - ``in_memory``: the items are tensors held in memory and ``batch(idx)`` builds a batch by
      indexing (no loader workers, no collate);
    - ``builds_batches``: ``get_batch(indices)`` builds a whole batch at once, equal to
      ``default_collate`` of the items (the harness then asks for batches, not items);
    - ``main_process_on_cpu``: on CPU the batches cost less to build than to pass between
      processes, so the loader uses no workers there;
    - ``device_transform``: None, or ``f(batch_on_device, generator) -> batch`` applied by the
      loader to whole batches on the device;
    - ``subset(positions)``: the items at ``positions``, with their labels (and indices).
    """

    labels: list
    indices = None
    dropped: dict = {}
    in_memory: bool = False
    builds_batches: bool = False
    main_process_on_cpu: bool = False
    device_transform = None

    def batch(self, idx: torch.Tensor) -> dict:
        raise NotImplementedError(f"{type(self).__name__} is not in memory")

    def get_batch(self, indices) -> dict:
        raise NotImplementedError(f"{type(self).__name__} does not build whole batches")

    def subset(self, positions) -> BuiltDataset:
        return PositionSubset(self, positions)


class PositionSubset(BuiltDataset):
    """The items of ``dataset`` at ``positions`` (as ``torch.utils.data.Subset``, whose
    ``indices`` are the positions), with their labels."""

    def __init__(self, dataset, positions):
        self.dataset = dataset
        self.indices = positions
        self.labels = [dataset.labels[i] for i in positions]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[self.indices[i]]


class _Adapted(BuiltDataset):
    """A dataset that does not derive from ``BuiltDataset`` (a plugin of an earlier release),
    with what it provides read once here; kept for one release."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.labels = getattr(dataset, "labels", None)  # a loader needs none; a carve does
        self.indices = getattr(dataset, "indices", None)
        self.dropped = getattr(dataset, "dropped", None) or {}
        self.in_memory = hasattr(dataset, "batch") and hasattr(dataset, "tensors")
        self.builds_batches = not self.in_memory and hasattr(dataset, "get_batch")
        self.main_process_on_cpu = bool(getattr(dataset, "main_process_on_cpu", False))
        self.device_transform = getattr(dataset, "device_transform", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset[i]

    def batch(self, idx):
        return self.dataset.batch(idx)

    def get_batch(self, indices):
        return self.dataset.get_batch(indices)

    def subset(self, positions):
        if hasattr(self.dataset, "subset"):
            return as_built(self.dataset.subset(positions))
        return PositionSubset(self.dataset, positions)


def as_built(dataset) -> BuiltDataset:
    """``dataset`` as a ``BuiltDataset`` (itself when it is one; None stays None)."""
    if dataset is None or isinstance(dataset, BuiltDataset):
        return dataset
    return _Adapted(dataset)


class DatasetSpec:
    """What a dataset declares: names, modality order, classes, splits, items, backbones, checks."""

    name: str = ""
    modalities: tuple[str, ...] = ()
    num_classes: int = 0
    class_names: tuple[str, ...] = ()
    embedded: bool = False  # ships with the package: no data root needed
    # "shared": ``splits()`` numbers every item in one index (the kit checks the splits are
    # disjoint); "per_split": each split numbers the lines of its own file (``check`` then
    # finds ids listed in two splits)
    split_index: str = "shared"
    drop_missing_default: bool = False

    def presets(self) -> dict[str, dict]:
        """Named preprocessing bundles (``data.preset``): preset name -> nested options dict."""
        return {"paper": {}}

    def concrete_options(self, root: Path, cfg) -> dict:
        """The resolved options (``cfg.options``) with every choice that depends on what is on disk
        at ``root`` made (e.g. the audio-visual ``data.cache.mode=auto``), so that a run's identity
        says what it trains on. Default: the options as resolved."""
        return cfg.options

    def resolve_root(self, root: str | os.PathLike | None) -> Path | None:
        """``--root``, else ``$MMBENCH_DATA/<name>``; ``None`` for embedded datasets."""
        if self.embedded and root is None:
            return None
        if root is not None:
            return Path(root).expanduser()
        base = os.environ.get("MMBENCH_DATA")
        if not base:
            raise DataError(
                f"no data root for {self.name!r}: pass --root DIR or set MMBENCH_DATA so that "
                f"$MMBENCH_DATA/{self.name} holds the dataset"
            )
        return Path(base).expanduser() / self.name

    def splits(self, root: Path | None, cfg) -> dict[str, list[int]]:
        raise NotImplementedError

    def build(self, split: str, root: Path | None, train: bool, cfg) -> BuiltDataset:
        raise NotImplementedError

    def backbones(self, cfg) -> dict[str, tuple[EncoderFactory, int]]:
        """One encoder factory per modality and its feature size, identical for every method."""
        raise NotImplementedError

    def check(self, root: Path | None, cfg) -> list[Problem]:
        return []

    def layouts(self) -> tuple[str, ...]:
        """On-disk layouts the loader accepts (e.g. ``("ogm", "amss")``); first is the default."""
        return ()

    # ------------------------------------------------------------------ capabilities
    # A dataset declares what it can do by implementing these hooks; ``capabilities()`` lists
    # the ones a spec implements (a plugin dataset ships them in its own module).
    CAPABILITIES = {"fixture": "write_fixture", "raw_fixture": "write_raw_fixture", "prepare": "prepare"}

    def capabilities(self) -> frozenset[str]:
        """The optional hooks this spec implements: ``"fixture"`` (a tiny tree in the format
        the loader reads, for tests and ``mmbench data fixture``), ``"raw_fixture"`` (a tiny
        tree in the downloaded format), ``"prepare"`` (``mmbench data prepare``)."""
        return frozenset(cap for cap, hook in self.CAPABILITIES.items()
                         if getattr(type(self), hook) is not getattr(DatasetSpec, hook))

    def ignored_settings(self, cfg) -> dict[str, str]:
        """``{dotted key: why}`` of harness settings this dataset ignores at ``cfg``'s values; a run
        that sets one is refused (``config_checks.check_feasible``) instead of only changing its name."""
        return {}

    def write_fixture(self, root: Path, layout: str | None = None, n_per_class: int = 2, seed: int = 0) -> Path:
        """Write a tiny tree in the real on-disk format (``layout``: one of ``layouts()``);
        return its root."""
        raise NotImplementedError(f"{self.name} has no fixture writer")

    def write_raw_fixture(self, root: Path, n_per_class: int = 2, seed: int = 0) -> None:
        """Write a tiny tree in the format people download (the input of ``prepare``)."""
        raise NotImplementedError(f"{self.name} has no raw fixture")

    def prepare(self, raw: Path, out: Path, jobs: int, progress: bool, **options):
        """``mmbench data prepare``: turn the download at ``raw`` into the tree the loader reads
        at ``out``; returns ``(outcome, details)`` (``mmbench.datasets.prepare.common``)."""
        raise NotImplementedError(f"{self.name} has no `data prepare`")


def stratified_carve(labels, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """The validation carve of every dataset without a published val split, over positions
    ``0..len(labels)-1``.

    One ``numpy.random.default_rng(seed)``; for each class in ascending order, a permutation of
    its positions (in order); the carved part takes the first ``floor(n_c * fraction + 0.5)``,
    and at least one position of a class with two or more when ``fraction > 0`` (a small tree
    would otherwise round every class down to an empty validation split; classes that round to
    one or more are carved exactly as before). Returns (kept, carved), both sorted.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    kept, carved = [], []
    for c in np.unique(labels):
        rows = np.nonzero(labels == c)[0]
        perm = rng.permutation(rows)
        n = int(np.floor(len(rows) * fraction + 0.5))
        if n == 0 and fraction > 0 and len(rows) >= 2:
            n = 1
        carved.extend(perm[:n].tolist())
        kept.extend(perm[n:].tolist())
    return sorted(kept), sorted(carved)


def counted_carve(n: int, count: int, seed: int) -> tuple[list[int], list[int]]:
    """``count`` positions of ``0..n-1`` carved as ``torch.randperm(n)[:count]`` under a generator
    seeded with ``seed`` (LFM's ``Crema_epoch_learnable.py:216-233``). Returns (kept sorted,
    carved in draw order: its first items are the ones a method takes first)."""
    if not 0 < count < n:
        raise ValueError(f"cannot hold out {count} of {n} training items")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).tolist()
    return sorted(perm[count:]), perm[:count]


class TensorDictDataset(BuiltDataset):
    """An in-memory dataset of equal-length tensors per modality. The harness batches it by
    indexing (no per-item collate), which is what keeps small datasets fast on CPU."""

    in_memory = True

    def __init__(self, tensors: dict[str, torch.Tensor], labels: torch.Tensor, indices: torch.Tensor):
        self.tensors = tensors
        self.labels = labels.long()
        self.indices = indices.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        item = {m: t[i] for m, t in self.tensors.items()}
        item["label"] = int(self.labels[i])
        item["index"] = int(self.indices[i])
        return item

    def batch(self, idx: torch.Tensor) -> dict:
        out = {m: t.index_select(0, idx) for m, t in self.tensors.items()}
        out["label"] = self.labels.index_select(0, idx)
        out["index"] = self.indices.index_select(0, idx)
        return out

    def subset(self, positions) -> TensorDictDataset:
        idx = torch.as_tensor(positions, dtype=torch.long)
        return TensorDictDataset(
            {m: t.index_select(0, idx) for m, t in self.tensors.items()},
            self.labels.index_select(0, idx),
            self.indices.index_select(0, idx),
        )
