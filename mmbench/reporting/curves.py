"""Per-epoch curves from ``history.jsonl``: accuracy per head, imbalance ratio, classifier counts.

All are pure functions of the run records (``result.json`` with its ``path``) and their
histories; only finished runs are used, as in the tables. Aggregation over seeds is per epoch
over the seeds that reached that epoch: mean and standard deviation (ddof = 1; 0 for one seed).

**Imbalance ratio** (our definition, from the per-modality logits each method returns): at epoch
``e`` of one seed, ``rho(e) = max_m acc_m(e) / min_m acc_m(e)`` over the modality heads (fusion
excluded) on the chosen split. ``rho = 1`` means the modalities are equally accurate; larger means
one modality dominates. It is undefined (NaN) with fewer than two modality heads (``unimodal``
runs) or when the weakest modality has accuracy 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mmbench.results import store

CURVE_COLUMNS = ["dataset", "run", "method", "seed", "epoch", "head", "value"]
CLASSIFIER_COLUMNS = ["dataset", "run", "seed", "epoch", "modality", "n"]


def load_histories_checked(records: list[dict]) -> tuple[list[tuple[dict, list[dict]]], list]:
    """(record, history) of every finished record that has a ``path``, and a ``store.RecordProblem``
    for each damaged ``history.jsonl`` (its readable epochs before the damage are kept)."""
    out, problems = [], []
    for rec in records:
        if rec.get("status") != "finished" or not rec.get("path"):
            continue
        path = Path(rec["path"]) / store.HISTORY
        history, problem = store.read_history_checked(path)
        problem = problem or short_history(path, rec, history)
        if problem is not None:
            problems.append(problem)
        out.append((rec, history))
    return out, problems


def short_history(path: Path, rec: dict, history: list[dict]) -> store.RecordProblem | None:
    """A Problem when ``history.jsonl`` lacks epochs its finished record selected (an empty,
    missing or truncated file: the curves would stop early without a word)."""
    last = (rec.get("selection") or {}).get("last") or {}
    wanted = last.get("epoch")
    have = max((line["epoch"] for line in history), default=None)
    if wanted is None or (have is not None and have >= wanted):
        return None
    got = "no epochs" if have is None else f"epochs up to {have}"
    return store.RecordProblem(str(path), "unreadable", f"holds {got} but the record's last epoch is {wanted} "
                         "(truncated or missing); its curves stop early: restore the file, or delete "
                         f"{path.parent} and train that seed again")


def load_histories(records: list[dict]) -> list[tuple[dict, list[dict]]]:
    """(record, history) of every finished record that has a ``path`` (see ``load_histories_checked``)."""
    return load_histories_checked(records)[0]


def curves_frame(histories, split: str = "test", metric: str = "acc") -> pd.DataFrame:
    """One row per (run, seed, epoch, head): ``metric`` on ``split``."""
    rows = []
    for rec, history in histories:
        key = (rec["dataset"], rec["run"], rec["method"], rec["seed"])
        for line in history:
            for head, metrics in (line.get(split) or {}).items():
                value = metrics.get(metric)
                if value is not None:
                    rows.append((*key, line["epoch"], head, value))
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def classifier_frame(histories) -> pd.DataFrame:
    """One row per (run, seed, epoch, modality) of ``diagnostics["classifiers"]`` (logged by methods whose ensembles grow)."""
    rows = []
    for rec, history in histories:
        for line in history:
            counts = (line.get("diagnostics") or {}).get("classifiers")
            if not isinstance(counts, dict):
                continue
            for modality, n in counts.items():
                rows.append((rec["dataset"], rec["run"], rec["seed"], line["epoch"], modality, n))
    return pd.DataFrame(rows, columns=CLASSIFIER_COLUMNS)


def imbalance_frame(curves: pd.DataFrame) -> pd.DataFrame:
    """``ratio`` = max over modality heads / min over modality heads, per (run, seed, epoch)."""
    cols = ["dataset", "run", "seed", "epoch", "value"]
    mods = curves[curves["head"] != "fusion"]
    if mods.empty:
        return pd.DataFrame(columns=cols)
    g = mods.groupby(["dataset", "run", "seed", "epoch"], sort=False)["value"]
    agg = g.agg(hi="max", lo="min", k="count").reset_index()
    agg = agg[agg["k"] >= 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(agg["lo"] > 0, agg["hi"] / agg["lo"].where(agg["lo"] > 0, 1.0), np.nan)
    agg["value"] = ratio
    return agg[cols].reset_index(drop=True)


def band(frame: pd.DataFrame, keys: list[str], value: str = "value") -> pd.DataFrame:
    """mean, std (ddof = 1; 0 for one seed) and seed count per ``keys`` + epoch."""
    cols = [*keys, "epoch", "mean", "std", "n"]
    if frame.empty:
        return pd.DataFrame(columns=cols)
    g = frame.groupby([*keys, "epoch"], sort=True)[value]
    out = g.agg(mean="mean", std="std", n="count").reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out[cols]
