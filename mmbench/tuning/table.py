"""``mmbench table --tuned LABEL``: each method's default and tuned rows side by side.

For every study of the label: the default row is the method's run at the study's fixed settings
(``resolve_config(dataset, method, fixed).run_name``) and the tuned row its ``tuned-<label>``
final runs. Both report the fusion test metric at each seed's val-selected epoch; the difference
is paired over the seeds both rows have (same seeds, same initialisations), with a paired t-test
(``scipy.stats.ttest_rel``). The footnote states the protocol (Dodge et al. 2019's checklist:
dimensions and ranges, budget, sampler, selection criterion) and the hours; budgets that differ
between rows are named (``strict``: refused). Per dataset, the rankings under default and tuned
settings are compared with Kendall's tau (``scipy.stats.kendalltau``).
"""

from __future__ import annotations

import math
import statistics

from mmbench.results.errors import ConfigError
from mmbench.tuning.study import final_tag, list_studies, study_from_json


def _scores(records, dataset: str, run: str, metric: str) -> dict[int, float]:
    out = {}
    for r in records:
        if r["dataset"] == dataset and r["run"] == run and r.get("status") == "finished":
            sel = (r.get("selection") or {}).get("val")
            if sel and sel.get("test"):
                out[int(r["seed"])] = float(sel["test"]["fusion"][metric])
    return out


def _ms(values) -> str:
    if not values:
        return "-"
    m = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * m:.2f} ± {100 * sd:.2f} (n={len(values)})"


def tuned_rows(records, results, label: str, datasets=None) -> list[dict]:
    from mmbench.benchmark.config import resolve_config

    docs = [d for d in list_studies(results) if d["label"] == label]
    if datasets:
        docs = [d for d in docs if d["spec"]["dataset"] in datasets]
    if not docs:
        raise ConfigError(
            f"no tuning study labelled {label!r} under {results}/_tune (see mmbench tune --status)"
        )
    rows = []
    for doc in docs:
        st = study_from_json(doc)
        default_run = resolve_config(st.dataset, st.method, st.fixed).run_name
        tuned_run = f"{st.method}-{final_tag(st.base, st.method, st.label)}"
        metric = st.metric
        d = _scores(records, st.dataset, default_run, metric)
        t = _scores(records, st.dataset, tuned_run, metric)
        block = next(
            (
                r.get("tuning")
                for r in records
                if r["dataset"] == st.dataset and r["run"] == tuned_run and r.get("tuning")
            ),
            None,
        )
        rows.append(
            {
                "study": st,
                "default_run": default_run,
                "tuned_run": tuned_run,
                "default": d,
                "tuned": t,
                "block": block,
            }
        )
    return rows


def _paired(d: dict, t: dict) -> tuple[str, float | None]:
    seeds = sorted(set(d) & set(t))
    if not seeds:
        return "-", None
    diffs = [t[s] - d[s] for s in seeds]
    m = statistics.fmean(diffs)
    text = f"{100 * m:+.2f}"
    p = None
    if len(seeds) > 1 and statistics.pstdev(diffs) > 0:
        from scipy.stats import ttest_rel

        p = float(ttest_rel([t[s] for s in seeds], [d[s] for s in seeds]).pvalue)
        text += f" (p={p:.3f}, {len(seeds)} paired seeds)"
    return text, p


def budget_key(block: dict | None) -> tuple | None:
    if not block:
        return None
    return (
        block["trials"],
        block["finished"],
        block["folds"],
        block["repeats"],
        block["metric"],
        block["sampler"],
    )


def render(records, results, label: str, datasets=None, strict: bool = False) -> str:
    from scipy.stats import kendalltau

    rows = tuned_rows(records, results, label, datasets)
    lines = [
        f"Default vs tuned (study {label}): fusion test score at the val-selected epoch, mean ± sd over seeds",
        "",
        "| dataset | method | default | tuned | tuned − default (paired) | best params |",
        "|---|---|---|---|---|---|",
    ]
    budgets = {}
    for r in rows:
        st, b = r["study"], r["block"]
        if b:
            n = f"{b['finished']} of {b['trials']} trials" if b.get("partial") else f"{b['trials']} trials"
            tuned_label = f"{r['tuned_run']} (tuned, {n} × {b['folds']} folds)"
            params = ", ".join(
                f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                for k, v in b["params"].items()
            )
            params += f" (trial {b['best_trial']}{', the anchor' if b['best_trial'] == 0 else ''})"
            budgets[st.name] = budget_key(b)
        else:
            tuned_label, params = "(no final runs: mmbench tune --final)", "-"
        diff, _ = _paired(r["default"], r["tuned"])
        lines.append(
            f"| {st.dataset} | {r['default_run']} / {tuned_label} | {_ms(list(r['default'].values()))} | "
            f"{_ms(list(r['tuned'].values()))} | {diff} | {params} |"
        )
    notes = []
    distinct = sorted({v for v in budgets.values() if v is not None})
    if len(distinct) > 1:
        names = "; ".join(
            f"{k}: {v[0]} trials ({v[1]} finished) × {v[2]} folds × {v[3]} repeats, {v[4]}, {v[5]}"
            for k, v in budgets.items()
        )
        if strict:
            raise ConfigError(f"tuned rows have different budgets ({names}); --strict-budget refuses them")
        notes.append(f"Budgets differ between rows: {names}.")
    hours = 0.0
    for r in rows:
        st, b = r["study"], r["block"]
        dims = "; ".join(f"{d.key} {d.describe()}" for d in st.dims)
        notes.append(f"{st.method} on {st.dataset}: searched {dims}.")
        if b:
            hours += b.get("hours", 0.0)
    first = next((r["block"] for r in rows if r["block"]), None)
    if first:
        kind = {
            "random": "random search (i.i.d.)",
            "sobol": "scrambled Sobol (QMC)",
            "grid": "grid",
            "tpe": "TPE (adaptive)",
        }[first["sampler"]]
        notes.append(
            f"Sampler: {kind}, study seed {first['study_seed']}, plus one anchor trial at the published "
            f"setting; no pruning; every trial trains the full epochs. Hyper-parameters chosen by "
            f"{first['folds']}-fold CV on train ∪ val ({first['metric']}); the test set and the final seeds "
            f"were never used in tuning. Tuning cost {hours:.2f} training hours in all."
        )
    notes += ranking_notes(rows, kendalltau)
    return "\n".join(lines + [""] + [f"- {n}" for n in notes])


def ranking_notes(rows, kendalltau) -> list[str]:
    out = []
    for dataset in sorted({r["study"].dataset for r in rows}):
        rs = [r for r in rows if r["study"].dataset == dataset and r["default"] and r["tuned"]]
        if len(rs) < 2:
            continue
        d = [statistics.fmean(r["default"].values()) for r in rs]
        t = [statistics.fmean(r["tuned"].values()) for r in rs]
        names = [r["study"].base for r in rs]
        order_d = [n for _, n in sorted(zip(d, names, strict=True), reverse=True)]
        order_t = [n for _, n in sorted(zip(t, names, strict=True), reverse=True)]
        tau = kendalltau(d, t).statistic
        tau_text = "undefined" if tau is None or math.isnan(tau) else f"{tau:.2f}"
        out.append(
            f"{dataset} ranking, default: {' > '.join(order_d)}; tuned: {' > '.join(order_t)}; "
            f"Kendall's tau {tau_text}."
        )
    return out
