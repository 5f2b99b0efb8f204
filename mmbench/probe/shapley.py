"""Exact Shapley contributions of the modalities to a run's fused prediction.

Definition followed: the Shapley value (Shapley 1953) of the cooperative game whose players are
the M modalities and whose value ``v(S)`` is the metric (accuracy by default) of the method's own
fused prediction on the test split when every modality outside ``S`` has its encoder output
replaced by that modality's train-split mean feature (``feature_predict.predict_from_features``):

    phi_m = sum over S subset of M \\ {m} of |S|! (M - |S| - 1)! / M! * (v(S + {m}) - v(S))

exact, by evaluating all 2^M coalitions (M <= 4). Efficiency holds by construction:
``sum_m phi_m = v(M) - v(empty)``. This is the weighted (efficient) Shapley value; the code of
BalanceBenchmark (GeWu-Lab, ``balancemm/evaluation/modalitys.py``) sums the *unweighted* marginal
contributions over the same coalitions, which for M = 2 is twice ``phi_m`` (same ratio, not the
same numbers). The imbalance ``degree`` here is ``(max phi - min phi) / sum |phi|`` in [0, 2]
(0: equal contributions; 1 for M = 2 when one modality contributes nothing), null when every
contribution is 0.
"""

from __future__ import annotations

import itertools
import math

MAX_MODALITIES = 4


def coalitions(modalities) -> list[tuple[str, ...]]:
    """Every subset of ``modalities`` (in their order), from the empty set to the full set."""
    mods = tuple(modalities)
    return [c for r in range(len(mods) + 1) for c in itertools.combinations(mods, r)]


def coalition_key(coalition) -> str:
    """``"image+fourier"``; ``""`` for the empty coalition (records use these keys)."""
    return "+".join(coalition)


def shapley_values(values: dict, modalities) -> dict[str, float]:
    """Exact Shapley values from ``values`` = ``{frozenset(S): v(S)}`` over all subsets."""
    mods = tuple(modalities)
    M = len(mods)
    phi = {}
    for m in mods:
        others = [o for o in mods if o != m]
        total = 0.0
        for r in range(M):
            weight = math.factorial(r) * math.factorial(M - r - 1) / math.factorial(M)
            for S in itertools.combinations(others, r):
                total += weight * (values[frozenset(S) | {m}] - values[frozenset(S)])
        phi[m] = total
    return phi


def imbalance_degree(phi: dict[str, float]) -> float | None:
    """``(max phi - min phi) / sum |phi|`` (module docstring); None when all are 0."""
    scale = sum(abs(v) for v in phi.values())
    if scale == 0:
        return None
    return (max(phi.values()) - min(phi.values())) / scale


def coalition_metrics(restored, features: dict, labels, train_means: dict, metric_fn) -> dict:
    """``{frozenset(S): METRICS of the fused head}`` with the modalities outside S at their train mean."""
    from mmbench.benchmark.feature_predict import predict_from_features

    mods = tuple(features)
    if len(mods) > MAX_MODALITIES:
        raise ValueError(f"exact Shapley needs at most {MAX_MODALITIES} modalities; got {len(mods)}")
    out = {}
    for S in coalitions(mods):
        fill = {m: train_means[m] for m in mods if m not in S}
        logits = predict_from_features(restored, features, labels, fill)
        out[frozenset(S)] = metric_fn(logits["fusion"], labels)
    return out


def shapley_block(metrics_by_coalition: dict, modalities, metric: str = "acc") -> dict:
    """The ``imbalance.shapley`` block of ``probe.json``."""
    values = {S: m[metric] for S, m in metrics_by_coalition.items()}
    phi = shapley_values(values, modalities)
    full, empty = frozenset(modalities), frozenset()
    return {
        "metric": metric,
        "values": phi,
        "fused": values[full],
        "all_masked": values[empty],
        "degree": imbalance_degree(phi),
        "coalitions": {
            coalition_key([m for m in modalities if m in S]): metrics_by_coalition[S]
            for S in sorted(metrics_by_coalition, key=lambda s: (len(s), sorted(list(modalities).index(m) for m in s)))
        },
    }
