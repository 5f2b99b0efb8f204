"""The ``DatasetSpec`` interface (ARCHITECTURE.md, "Datasets") and shared dataset helpers.

A dataset module registers one ``DatasetSpec``. Items of ``build()`` are dicts
``{"<modality>": Tensor, ..., "label": int, "index": int}``; the built ``torch`` dataset also
exposes ``labels`` (one int per item) so the harness can carve stratified slices (G-Blend's
held-out set) without knowing the dataset. Datasets never know about methods.
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

from mmbench.errors import DataError


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


class DatasetSpec:
    """What a dataset declares: names, modality order, classes, splits, items, backbones, checks."""

    name: str = ""
    modalities: tuple[str, ...] = ()
    num_classes: int = 0
    class_names: tuple[str, ...] = ()
    embedded: bool = False  # ships with the package: no data root needed
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

    def build(self, split: str, root: Path | None, train: bool, cfg) -> Dataset:
        raise NotImplementedError

    def backbones(self, cfg) -> dict[str, tuple[EncoderFactory, int]]:
        """One encoder factory per modality and its feature size, identical for every method."""
        raise NotImplementedError

    def check(self, root: Path | None, cfg) -> list[Problem]:
        return []

    def layouts(self) -> tuple[str, ...]:
        """On-disk layouts the loader accepts (e.g. ``("ogm", "amss")``); first is the default."""
        return ()

    def write_fixture(self, root: Path, layout: str | None = None, n_per_class: int = 2, seed: int = 0) -> Path:
        """Write a tiny tree in the real on-disk format (specs/datasets.md §10); return its root."""
        raise NotImplementedError(f"{self.name} has no fixture writer")


def stratified_carve(labels, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """The carve of specs/datasets.md §1.3 over positions ``0..len(labels)-1``.

    One ``numpy.random.default_rng(seed)``; for each class in ascending order, a permutation of
    its positions (in order); the carved part takes the first ``floor(n_c * fraction + 0.5)``.
    Returns (kept, carved), both sorted.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    kept, carved = [], []
    for c in np.unique(labels):
        rows = np.nonzero(labels == c)[0]
        perm = rng.permutation(rows)
        n = int(np.floor(len(rows) * fraction + 0.5))
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


class TensorDictDataset(Dataset):
    """An in-memory dataset of equal-length tensors per modality. The harness batches it by
    indexing (no per-item collate), which is what keeps small datasets fast on CPU."""

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
