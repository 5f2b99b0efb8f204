"""K-fold cross-validation splits inside train ∪ val (``data.cv_folds = K``).

The pool is the standard split's ``train ∪ val`` item lists, taken before any train-size limit
(``data.limit_train_per_class``). It is cut into K stratified folds with one
``numpy.random.default_rng(split_seed)``: for each class in ascending order, a permutation of
its pool items, dealt round-robin to the folds with an offset carried across classes (so every
class is within one item of even in every fold, and the fold sizes too). Fold ``seed mod K``
validates, the rest of the pool trains, and the test rows are exactly the standard split's.

Changing ``split_seed`` is not a substitute: mfeat's ``mfeat_splits(split_seed)`` re-permutes
test together with train and val, so it would move test rows into training.

The harness applies this by wrapping the dataset spec (``folded_spec``): the wrapper's
``splits`` returns the fold's lists, and every dataset's ``build`` reads its rows through
``self.splits``, so datasets are not edited and the train/val transform roles follow the split
the item is used in (``build(split, root, train, cfg)``), not the split it came from.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from mmbench.results.errors import ConfigError

LIMIT_OPTION = "limit_train_per_class"


def stratified_folds(labels, k: int, seed: int) -> list[list[int]]:
    """K lists of positions ``0..len(labels)-1`` (each sorted): per class ascending, a
    permutation of its positions from one ``default_rng(seed)``, position j of the permutation
    to fold ``(offset + j) mod k``; ``offset`` grows by the class size."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    offset = 0
    for c in np.unique(labels):
        perm = rng.permutation(np.nonzero(labels == c)[0])
        for j, pos in enumerate(perm.tolist()):
            folds[(offset + j) % k].append(pos)
        offset += len(perm)
    return [sorted(f) for f in folds]


def _unlimited(data_cfg):
    """``data_cfg`` without the train-size limit (the pool is taken before it)."""
    out = dataclasses.replace(data_cfg, options=copy.deepcopy(data_cfg.options))
    if out.options.get(LIMIT_OPTION):
        out.options[LIMIT_OPTION] = 0
    return out


def _item_ids(ds) -> list[int]:
    indices = getattr(ds, "indices", None)
    if indices is not None:
        return [int(i) for i in indices]
    return [int(r.index) for r in ds.rows]


def pool_labels(spec, root, data_cfg) -> tuple[dict, dict[int, int]]:
    """(the standard splits without the train limit, item -> label over train ∪ val)."""
    base = _unlimited(data_cfg)
    std = spec.splits(root, base)
    labels: dict[int, int] = {}
    for split in ("train", "val"):
        if not std.get(split):
            continue
        ds = spec.build(split, root, False, base)
        labels.update(zip(_item_ids(ds), (int(y) for y in ds.labels), strict=True))
    return std, labels


def smallest_class(spec, root, data_cfg) -> tuple[int, int]:
    """(the label with the fewest pool items, its count)."""
    _, labels = pool_labels(spec, root, data_cfg)
    values, counts = np.unique(np.asarray(list(labels.values())), return_counts=True)
    i = int(np.argmin(counts))
    return int(values[i]), int(counts[i])


def fold_splits(spec, root, data_cfg, seed: int) -> dict[str, list[int]]:
    """``{"train", "val", "test"}`` item lists of fold ``seed mod data_cfg.cv_folds`` (and
    ``"_pool"``: the pool's size)."""
    k = int(data_cfg.cv_folds)
    std, labels = pool_labels(spec, root, data_cfg)
    pool = sorted(labels)
    ys = [labels[i] for i in pool]
    values, counts = np.unique(np.asarray(ys), return_counts=True)
    if counts.min() < k:
        c = int(values[int(np.argmin(counts))])
        raise ConfigError(
            f"{spec.name} has {int(counts.min())} items of class {c} in train∪val: at most --folds {int(counts.min())}"
        )
    folds = stratified_folds(ys, k, data_cfg.split_seed)
    f = seed % k
    val = [pool[p] for p in folds[f]]
    held = set(val)
    train = [i for i in pool if i not in held]
    limit = int(data_cfg.options.get(LIMIT_OPTION, 0) or 0)
    if limit:  # the first ``limit`` train items of each class, as the dataset's own limit does
        kept, seen = [], {}
        for i in train:
            c = labels[i]
            if seen.get(c, 0) < limit:
                kept.append(i)
                seen[c] = seen.get(c, 0) + 1
        train = kept
    return {"train": train, "val": sorted(val), "test": list(std["test"]), "_pool": len(pool)}


class _FoldedSplits:
    """The ``splits`` of a folded spec: computed once per (root, data settings)."""

    def __init__(self, spec, seed: int):
        self.spec, self.seed, self.memo, self.pool = spec, seed, {}, None

    def __call__(self, root, data_cfg):
        key = (str(root), repr(data_cfg))
        if key not in self.memo:
            self.memo[key] = fold_splits(self.spec, root, data_cfg, self.seed)
        out = dict(self.memo[key])
        self.pool = out.pop("_pool")
        return {k: list(v) for k, v in out.items()}


def folded_spec(spec, cfg):
    """``spec`` itself when ``cfg.data.cv_folds`` is 0, else a shallow copy whose ``splits`` is
    fold ``cfg.seed mod K`` (``fold_splits``) and which carries ``cv_info``."""
    k = int(getattr(cfg.data, "cv_folds", 0) or 0)
    if k < 2:
        return spec
    folded = copy.copy(spec)
    folded.splits = _FoldedSplits(spec, cfg.seed)
    folded.cv_info = {"folds": k, "fold": cfg.seed % k}
    return folded


def cv_record(spec) -> dict:
    """``result.json -> splits.cv`` of a folded run: ``{"folds", "fold", "pool"}`` (``{}``
    for a standard run)."""
    info = getattr(spec, "cv_info", None)
    if info is None:
        return {}
    return {"cv": {**info, "pool": spec.splits.pool}}
