"""Expected best validation score against the tuning budget (Dodge et al. 2019, "Show your work").

Let v(1) <= ... <= v(N) be the sorted objective values of a study's N planned, non-anchor trials
(a diverged trial counts with value 0). For n = 1..N:

* ``dodge`` (default; draws with replacement, dodgejesse/show_your_work ``plot.py``):
  ``E[max_n] = sum_i v(i) * ((i/N)^n - ((i-1)/N)^n)``, which equals
  ``sum over distinct v of v * (F(v)^n - F(v-)^n)``, so ties are handled;
* ``unbiased`` (Tang et al. 2020, without replacement):
  ``E[max_n] = sum_{i=n}^{N} v(i) * C(i-1, n-1) / C(N, n)``.

The band is a percentile bootstrap (5-95 %, B resamples of the N values with a fixed seed, each
through the same estimator; Tang et al. warn such intervals are approximate), or ``std``: +- the
standard deviation of the max-of-n distribution clipped to [min, max], as Dodge's ``plot.py``
shades it. The anchor (published setting) is drawn as a dotted line and is not part of the
curve, which needs i.i.d. draws; N < 5 gives points only (Dodge's README).
"""

from __future__ import annotations

import math

import numpy as np


def expected_max_dodge(values) -> np.ndarray:
    v = np.sort(np.asarray(values, dtype=float))
    n_total = len(v)
    i = np.arange(1, n_total + 1)
    out = []
    for n in range(1, n_total + 1):
        w = (i / n_total) ** n - ((i - 1) / n_total) ** n
        out.append(float(np.sum(v * w)))
    return np.asarray(out)


def expected_max_unbiased(values) -> np.ndarray:
    v = np.sort(np.asarray(values, dtype=float))
    n_total = len(v)
    out = []
    for n in range(1, n_total + 1):
        total = math.comb(n_total, n)
        out.append(sum(v[i - 1] * math.comb(i - 1, n - 1) for i in range(n, n_total + 1)) / total)
    return np.asarray(out)


ESTIMATORS = {"dodge": expected_max_dodge, "unbiased": expected_max_unbiased}


def max_std_dodge(values) -> np.ndarray:
    """Standard deviation of max-of-n under draws with replacement (Dodge's shaded band)."""
    v = np.sort(np.asarray(values, dtype=float))
    n_total = len(v)
    i = np.arange(1, n_total + 1)
    out = []
    for n in range(1, n_total + 1):
        w = (i / n_total) ** n - ((i - 1) / n_total) ** n
        mean = np.sum(v * w)
        out.append(float(math.sqrt(max(np.sum(w * (v - mean) ** 2), 0.0))))
    return np.asarray(out)


def band(values, estimator: str = "dodge", kind: str = "bootstrap", resamples: int = 1000, seed: int = 0):
    """(low, high) arrays over n = 1..N."""
    values = np.asarray(values, dtype=float)
    fn = ESTIMATORS[estimator]
    if kind == "std":
        curve, sd = fn(values), max_std_dodge(values)
        return np.clip(curve - sd, values.min(), values.max()), np.clip(
            curve + sd, values.min(), values.max()
        )
    rng = np.random.default_rng(seed)
    boots = np.stack([fn(rng.choice(values, size=len(values), replace=True)) for _ in range(resamples)])
    return np.percentile(boots, 5, axis=0), np.percentile(boots, 95, axis=0)


def study_curve(values, estimator="dodge", band_kind="bootstrap", seed=0) -> dict:
    curve = ESTIMATORS[estimator](values)
    lo, hi = band(values, estimator, band_kind, seed=seed)
    return {
        "n": list(range(1, len(values) + 1)),
        "expected_max": curve.tolist(),
        "low": lo.tolist(),
        "high": hi.tolist(),
    }


def curve_data(results, label: str, dataset: str, estimator="dodge", band_kind="bootstrap") -> list[dict]:
    """One entry per study of ``label`` on ``dataset``: its planned trials' values (failed = 0),
    the anchor's value, the curve and band, hours per trial, failure count, importance."""
    from mmbench.tuning.commands import _open
    from mmbench.tuning.runner import study_state
    from mmbench.tuning.study import Storage, list_studies, study_from_json

    out = []
    for doc in list_studies(results):
        if doc["label"] != label or doc["spec"]["dataset"] != dataset:
            continue
        st = study_from_json(doc)
        storage = Storage(doc["storage"], doc["storage"], "rdb" if "://" in doc["storage"] else "journal")
        optuna, _, (study,) = _open([st], storage)
        state = study_state(st, study, results, optuna)
        vals = {n: v for n, v, _ in state.complete}
        vals.update({n: 0.0 for n, _, _ in state.failed})
        planned = [vals[i] for i in sorted(vals) if i > 0]
        entry = {
            "study": st.name,
            "method": st.base,
            "sampler": st.sampler,
            "trials": len(planned),
            "failed": sum(1 for n, _, _ in state.failed if n > 0),
            "anchor": vals.get(0),
            "values": planned,
            "hours_per_trial": state.hours / max(1, len(state.complete)),
            "edge_warnings": [],
        }
        if planned:
            entry.update(study_curve(planned, estimator, band_kind))
        if state.best is not None:
            from mmbench.tuning.runner import edge_warnings

            entry["edge_warnings"] = edge_warnings(st, st.plan[state.best[0]])
        entry["importance"] = importance(study, optuna)
        out.append(entry)
    return out


def importance(study, optuna) -> dict:
    """``optuna.importance.get_param_importances`` (PED-ANOVA by default in Optuna 5), or {}
    when the study is too small for it."""
    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except Exception:  # noqa: BLE001 - too few trials, a single value, one parameter
        return {}


def figure(entries: list[dict], dataset: str, x: str = "trials", estimator: str = "dodge"):
    """(matplotlib Figure, caption) of one dataset's tuning curves."""
    from mmbench.paper.figures import _figure

    fig, axes = _figure(1, width=4.2, height=3.0)
    ax = axes[0][0]
    colors = [f"C{i}" for i in range(10)]
    for k, e in enumerate(entries):
        c = colors[k % 10]
        if not e["values"]:
            continue
        scale = e["hours_per_trial"] if x == "hours" else 1.0
        xs = np.asarray(e["n"], dtype=float) * scale
        label = f"{e['method']} ({e['failed']}/{e['trials']} failed)"
        if e["sampler"] in ("sobol", "grid"):
            label += ", not i.i.d."
        ys = 100 * np.asarray(e["expected_max"])
        if e["trials"] < 5:
            ax.plot(xs, ys, "o", color=c, label=label)
        else:
            ax.plot(xs, ys, "-", color=c, label=label)
            ax.fill_between(
                xs, 100 * np.asarray(e["low"]), 100 * np.asarray(e["high"]), color=c, alpha=0.15, lw=0
            )
        if e["anchor"] is not None:
            ax.axhline(100 * e["anchor"], color=c, ls=":", lw=1)
    if x != "hours":
        from mmbench.paper.figures import _integer_axis

        _integer_axis(ax.xaxis)
        ax.set_xlim(0.5, max([len(e["values"]) for e in entries] + [1]) + 0.5)
    ax.set_xlabel("training hours" if x == "hours" else "trials (n)")
    ax.set_ylabel("expected best val score (%)")
    ax.set_title(f"{dataset}: tuning curves")
    ax.legend(loc="lower right")
    name = "Dodge et al. 2019 (with replacement)" if estimator == "dodge" else "Tang et al. 2020 (unbiased)"
    caption = (
        f"Expected best validation score of n random trials (estimator: {name}), per method; shaded: 5-95 % "
        "bootstrap band (approximate, Tang et al. 2020); dotted: the published setting (anchor trial, not in "
        "the curve). Diverged trials count with value 0."
    )
    return fig, caption


def write(
    results, label: str, datasets, out_dir, x="trials", estimator="dodge", band_kind="bootstrap", echo=print
) -> list:
    import json
    from pathlib import Path

    from mmbench.paper import figures as figs
    from mmbench.results.errors import MMBenchError
    from mmbench.tuning.study import list_studies

    docs = [d for d in list_studies(results) if d["label"] == label]
    if not docs:
        raise MMBenchError(f"no tuning study labelled {label!r} under {results}/_tune")
    written, data = [], {}
    for dataset in sorted(
        {d["spec"]["dataset"] for d in docs} & set(datasets or [d["spec"]["dataset"] for d in docs])
    ):
        entries = curve_data(results, label, dataset, estimator, band_kind)
        fig, caption = figure(entries, dataset, x, estimator)
        stem = f"tuning_{dataset}_{label}"
        written += figs.save(fig, out_dir, stem)
        notes = [f"{e['method']}: {w}" for e in entries for w in e["edge_warnings"]]
        (Path(out_dir) / f"{stem}.txt").write_text(caption + "\n" + "\n".join(notes) + "\n", encoding="utf-8")
        data[dataset] = entries
        echo(f"wrote {', '.join(str(p) for p in written[-2:])}")
        for n in notes:
            echo(f"warning: {n}")
    (Path(out_dir) / f"figure-data-{label}.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    return written
