"""The one metrics module: Acc, MAP and MacroF1 (the three metrics of the AUG paper's tables), computed by
scikit-learn.

* **Acc** — micro accuracy of the argmax of the logits (first index on ties):
  ``sklearn.metrics.accuracy_score``.
* **MAP** — mean over classes of the one-vs-rest average precision of the softmax
  probabilities, ``AP = sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds (tied scores form
  one threshold), no interpolation: ``sklearn.metrics.average_precision_score`` per class, which
  equals the ``compute_mAP`` loop of njustkmg/NeurIPS25-AUG. A class with no positive in the split
  gets AP = 0 and a warning; it is not dropped (sklearn would return a meaningless value).
* **MacroF1** — ``sklearn.metrics.f1_score(y, yhat, average="macro", zero_division=0)``: labels
  present in y or yhat only.

All values are fractions in [0, 1].
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.metrics import accuracy_score, average_precision_score, f1_score

METRIC_NAMES = ("acc", "map", "f1")


def accuracy(y: np.ndarray, yhat: np.ndarray) -> float:
    """Micro accuracy (sklearn ``accuracy_score``); 0 on an empty split."""
    return float(accuracy_score(y, yhat)) if len(y) else 0.0


def average_precision(positive: np.ndarray, scores: np.ndarray) -> float:
    """Non-interpolated AP of one binary problem (sklearn); 0 when there is no positive."""
    positive = np.asarray(positive, dtype=bool)
    if not positive.any():
        return 0.0
    return float(average_precision_score(positive, np.asarray(scores, dtype=np.float64)))


def mean_average_precision(y: np.ndarray, probs: np.ndarray) -> float:
    """Class-wise AP of softmax probabilities, macro mean (absent classes count as 0). The
    present classes go to sklearn in one ``average_precision_score(..., average=None)`` call
    (one-vs-rest indicator columns: the same per-class values as one call per class)."""
    y = np.asarray(y)
    probs = np.asarray(probs, dtype=np.float64)
    num_classes = probs.shape[1]
    if num_classes == 0:
        return 0.0
    positive = y[:, None] == np.arange(num_classes)[None, :]
    present = positive.any(axis=0)
    if not present.all():
        absent = [int(c) for c in np.flatnonzero(~present)]
        warnings.warn(f"MAP: classes {absent} have no positive sample; their AP counts as 0", stacklevel=2)
    aps = np.zeros(num_classes)
    if present.any():
        aps[present] = average_precision_score(positive[:, present], probs[:, present], average=None)
    return float(np.mean(aps))


def macro_f1(y: np.ndarray, yhat: np.ndarray) -> float:
    """sklearn ``f1_score(y, yhat, average='macro')`` (labels in y or yhat; 0 for an empty split)."""
    if len(y) == 0:
        return 0.0
    return float(f1_score(y, yhat, average="macro", zero_division=0))


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
    """Every metric of every head: ``{"fusion": {...}, "<modality>": {...}}`` (the record's ``metrics``)."""
    return {head: classification_metrics(z, y) for head, z in logits_per_head.items()}
