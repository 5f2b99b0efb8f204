"""The one metrics module: Acc, MAP and MacroF1 (specs/methods/evaluation.md §3).

* **Acc** — micro accuracy, argmax of the logits (first index on ties).
* **MAP** — mean over classes of the one-vs-rest average precision of the softmax
  probabilities: ``AP = sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds (tied scores form
  one threshold), no interpolation. Equal to sklearn ``average_precision_score(onehot(y), P,
  average="macro")`` and to the ``compute_mAP`` loop of njustkmg/NeurIPS25-AUG. A class with no
  positive in the split gets AP = 0 and a warning; it is not dropped.
* **MacroF1** — sklearn ``f1_score(y, yhat, average="macro")``: labels present in y or yhat only.

All values are fractions in [0, 1].
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

METRIC_NAMES = ("acc", "map", "f1")


def accuracy(y: np.ndarray, yhat: np.ndarray) -> float:
    """Micro accuracy (sklearn ``accuracy_score``)."""
    y = np.asarray(y)
    return float(np.mean(np.asarray(yhat) == y)) if len(y) else 0.0


def average_precision(positive: np.ndarray, scores: np.ndarray) -> float:
    """Non-interpolated AP of one binary problem; tied scores form one threshold."""
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(positive.sum())
    if n_pos == 0:
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], positive[order]
    tp = np.cumsum(p)
    # the last index of each run of equal scores closes one threshold
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp_t = tp[last]
    precision = tp_t / (last + 1)
    recall = tp_t / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(y: np.ndarray, probs: np.ndarray) -> float:
    """Class-wise AP of softmax probabilities, macro mean (absent classes count as 0)."""
    y = np.asarray(y)
    probs = np.asarray(probs, dtype=np.float64)
    num_classes = probs.shape[1]
    aps = []
    absent = []
    for c in range(num_classes):
        pos = y == c
        if not pos.any():
            absent.append(c)
        aps.append(average_precision(pos, probs[:, c]))
    if absent:
        warnings.warn(f"MAP: classes {absent} have no positive sample; their AP counts as 0", stacklevel=2)
    return float(np.mean(aps)) if aps else 0.0


def macro_f1(y: np.ndarray, yhat: np.ndarray) -> float:
    """sklearn ``f1_score(y, yhat, average='macro')`` semantics (labels in y or yhat)."""
    y = np.asarray(y)
    yhat = np.asarray(yhat)
    labels = np.union1d(y, yhat)
    if len(labels) == 0:
        return 0.0
    f1s = []
    for c in labels:
        tp = np.sum((yhat == c) & (y == c))
        fp = np.sum((yhat == c) & (y != c))
        fn = np.sum((yhat != c) & (y == c))
        denom = 2 * tp + fp + fn
        f1s.append(0.0 if tp == 0 else 2 * tp / denom)
    return float(np.mean(f1s))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def classification_metrics(logits, y) -> dict[str, float]:
    """``{"acc", "map", "f1"}`` of one head's logits (N x K) against labels (N,)."""
    if isinstance(logits, torch.Tensor):
        logits = logits.detach().float().cpu().numpy()
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    logits = np.asarray(logits)
    y = np.asarray(y)
    yhat = logits.argmax(axis=1)
    return {
        "acc": accuracy(y, yhat),
        "map": mean_average_precision(y, softmax(logits)),
        "f1": macro_f1(y, yhat),
    }


def head_metrics(logits_per_head: dict, y) -> dict[str, dict[str, float]]:
    """METRICS of ARCHITECTURE.md: ``{"fusion": {...}, "<modality>": {...}}``."""
    return {head: classification_metrics(z, y) for head, z in logits_per_head.items()}
