r"""Tables are pure functions of run records: load ``result.json`` files into pandas, aggregate
mean ± std over seeds, rank and test each column, render a jinja2 template
(``mmbench/report_templates/``).

Layouts (``mmbench table --layout``):

* ``table1`` — the papers' Table 1: rows are methods; per dataset a column group holding the seed
  count and, for fusion and every modality, the requested metrics (default Acc, MAP, MacroF1).
* ``table2`` — the papers' Table 2: rows are methods; per dataset the fusion Acc and MacroF1
  (or the requested metrics).
* ``long`` — one row per (dataset, method, head, metric) with mean, std, seed count, rank and
  the p-value against the column's best.

Formats: LaTeX (booktabs; ``\cellcolor`` shading from ``xcolor`` with the ``table`` option; the
long layout is a ``longtable``), HTML (CSS classes ``best``, ``top1``-``top3``, ``incomplete``)
and Markdown (best in bold; Markdown has neither column groups nor shading, so ``table1`` and
``table2`` are one table per dataset there). ``csv`` exports the per-seed values instead.

Every number is the metric of the test split (or ``split``) at the epoch the selection rule
picked (``mmbench.benchmark.selection``), times 100; mean ± std (ddof = 1; 0 for one seed) over
the finished seeds. In every column the best mean is bold and the top three are shaded (ties
share a rank); each other method is compared with the best by Welch's t-test
(``significance.py``) and marked where p < alpha. ``unimodal-*`` rows have no fusion: their
"fusion" logits are their single head, so they are shown but not ranked in fusion columns.
Incomplete groups show ``finished/expected`` seeds, the expected count being ``--seeds`` or the
largest number of seeds (finished or failed) of any method on that dataset.
"""

from __future__ import annotations

from importlib import resources

import jinja2
import numpy as np
import pandas as pd

from mmbench.benchmark.selection import SELECTION_RULES
from mmbench.reporting.identity_rows import old_record_note, split_by_identity
from mmbench.reporting.significance import DEFAULT_ALPHA, against_best
from mmbench.results.registry import BASELINE_METHOD, Registry

# The metrics of mmbench.benchmark.metrics.METRIC_NAMES, restated so that tables and reports do
# not import torch (a test checks that the two agree).
METRIC_NAMES = ("acc", "map", "f1")
SELECTION_LABELS = {
    "val": "best validation epoch (val)",
    "last": "last epoch",
    "test-best": "best test epoch (test-best: the papers' protocol, optimistic)",
}
FORMATS = ("md", "latex", "html", "csv")
METRIC_LABELS = {"acc": "Acc", "map": "MAP", "f1": "MacroF1"}
LAYOUT_METRICS = {"table1": METRIC_NAMES, "table2": ("acc", "f1"), "long": METRIC_NAMES}
_TEMPLATE = {"md": "table.md.j2", "latex": "table.tex.j2", "html": "table.html.j2"}

# Method facts (row order, head meanings, unimodal references) come from the records only
# (``result.json`` ``heads``, ``unimodal_reference``); records without them (schema 1) are
# flagged in the table's notes (``identity_rows.old_record_note``).
REFERENCE_BASELINE = BASELINE_METHOD  # the plain joint-training baseline: the first row after the references


def is_unimodal_reference(rec: dict) -> bool:
    """The record's ``unimodal_reference``; a schema-1 record (no such field) counts as one when
    its method is named ``unimodal``, the only reference those versions wrote."""
    flag = rec.get("unimodal_reference")
    return bool(flag) if flag is not None else rec.get("method") == "unimodal"


def run_facts(records: list[dict]) -> dict[str, dict]:
    """Per row name: ``method``, ``reference`` (unimodal reference) and ``heads`` ({head: meaning})."""
    facts: dict[str, dict] = {}
    for rec in records:
        f = facts.setdefault(rec["run"], {"method": rec.get("method", rec["run"]), "reference": False, "heads": {}})
        f["reference"] = f["reference"] or is_unimodal_reference(rec)
        heads = rec.get("heads")
        if isinstance(heads, dict):
            f["heads"].update({h: m for h, m in heads.items() if isinstance(m, str)})
    return facts


def run_sort_key(run: str, fact: dict | None = None):
    """Rows: unimodal references, then the joint baseline, then the other methods by name;
    within a method untagged before tagged, then by row name."""
    fact = fact or {"method": run, "reference": False}
    method = fact["method"]
    tier = 0 if fact.get("reference") else (1 if method == REFERENCE_BASELINE else 2)
    return (tier, method, run != method, run)


def results_frame(records: list[dict], select: str = "val", split: str = "test") -> pd.DataFrame:
    """One row per (run, seed, head, metric) of finished runs, at the epoch ``select`` picked."""
    if select not in SELECTION_RULES:
        raise ValueError(f"unknown selection rule {select!r}")
    rows = []
    for rec in records:
        if rec.get("status") != "finished":
            continue
        sel = rec.get("selection", {}).get(select)
        if not sel:
            continue
        for head, metrics in sel[split].items():
            for metric, value in metrics.items():
                if value is None:
                    continue
                rows.append(
                    (rec["dataset"], rec["run"], rec["method"], rec.get("tag"), rec["seed"], sel["epoch"],
                     head, metric, value)
                )
    cols = ["dataset", "run", "method", "tag", "seed", "epoch", "head", "metric", "value"]
    return pd.DataFrame(rows, columns=cols)


def failed_runs(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("status") == "failed"]


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """mean, std (ddof=1; 0 for one seed) and seed count per (dataset, run, head, metric)."""
    if frame.empty:
        return pd.DataFrame(columns=["dataset", "run", "head", "metric", "mean", "std", "n"])
    g = frame.groupby(["dataset", "run", "head", "metric"], sort=False)["value"]
    out = g.agg(mean="mean", std=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, n="count")
    return out.reset_index()


def head_order(heads) -> list[str]:
    """``fusion`` first, then the modalities in the order given (the run records list them in
    the order of the method's ``predict``, which follows the dataset's modality order)."""
    heads = list(dict.fromkeys(heads))
    return (["fusion"] if "fusion" in heads else []) + [h for h in heads if h != "fusion"]


def seed_counts(records: list[dict], frame: pd.DataFrame, expected: int | None = None):
    """Finished seeds per (dataset, run) and the expected seed count per dataset."""
    finished = frame.groupby(["dataset", "run"])["seed"].nunique().to_dict() if len(frame) else {}
    seen: dict[tuple, set] = {}
    for rec in records:
        if rec.get("status") in ("finished", "failed"):
            seen.setdefault((rec["dataset"], rec["run"]), set()).add(rec["seed"])
    per_dataset: dict[str, int] = {}
    for (dataset, _), seeds in seen.items():
        per_dataset[dataset] = max(per_dataset.get(dataset, 0), len(seeds))
    if expected is not None:
        per_dataset = {d: expected for d in per_dataset}
    return finished, per_dataset


def _seed_label(n: int, expected: int) -> str:
    return str(n) if n >= expected else f"{n}/{expected}"


def _column_label(layout: str, head: str, metric: str, metrics) -> str:
    label = METRIC_LABELS.get(metric, metric)
    if layout == "table2":
        return label if head == "fusion" else f"{head} {label}"
    return f"{head} {label}" if len(metrics) > 1 else head


def _modality_logits(fact: dict) -> str | None:
    """What the record says a method's per-modality logits are (its ``heads`` minus fusion)."""
    meanings = {h: m for h, m in fact["heads"].items() if h != "fusion"}
    if not meanings:
        return None
    if len(set(meanings.values())) == 1:
        return next(iter(meanings.values()))
    return "; ".join(f"{h}: {m}" for h, m in meanings.items())


def _column_stats(values: dict[str, np.ndarray], rankable: set[str], alpha: float) -> dict[str, dict]:
    """Mean, std, n, rank (competition ranking of the means as shown, in % to two decimals;
    higher is better; ties share a rank), p-value against the best (the first of the tied best
    in row order) and the significance mark of every run of one column."""
    means = {run: float(np.mean(v)) for run, v in values.items()}
    shown = {run: round(100 * m, 2) for run, m in means.items()}  # rank what the table shows
    ranked = [run for run in values if run in rankable]
    best = max(ranked, key=lambda r: shown[r]) if ranked else None
    pvals = against_best({r: values[r] for r in ranked}, best) if best else {}
    out = {}
    for run, v in values.items():
        rank = None
        if run in rankable:
            rank = 1 + sum(shown[o] > shown[run] for o in ranked)
        p = pvals.get(run)
        out[run] = {
            "mean": 100 * means[run],
            "std": 100 * float(np.std(v, ddof=1)) if len(v) > 1 else None,  # one seed: no spread
            "n": len(v),
            "rank": rank,
            "best": rank == 1,
            "shade": rank if rank is not None and rank <= 3 else 0,
            "p": p,
            "sig": p is not None and p < alpha,
        }
    return out


def _values(frame: pd.DataFrame) -> dict[tuple, np.ndarray]:
    """Per (dataset, run, head, metric): the per-seed values, in seed order."""
    values: dict[tuple, np.ndarray] = {}
    if len(frame):
        ordered = frame.sort_values("seed", kind="stable")
        for key, v in ordered.groupby(["dataset", "run", "head", "metric"], sort=False)["value"]:
            values[key] = v.to_numpy(dtype=float)
    return values


def _dataset_groups(frame, values, facts, layout, metrics, expected_by_ds, alpha) -> tuple[list, dict]:
    """The column groups (one per dataset) and the statistics of every cell."""
    by_column: dict[tuple, dict[str, np.ndarray]] = {}
    for (d, run, h, m), v in values.items():
        by_column.setdefault((d, h, m), {})[run] = v
    groups, stats = [], {}
    for dataset in sorted(frame["dataset"].unique()) if len(frame) else []:
        heads = head_order(frame.loc[frame["dataset"] == dataset, "head"].unique())
        if layout == "table2":
            heads = [h for h in heads if h == "fusion"]
        columns = [
            {"head": h, "metric": m, "metric_label": METRIC_LABELS.get(m, m), "label": _column_label(layout, h, m, metrics)}
            for h in heads
            for m in metrics
        ]
        for col in columns:
            col_values = by_column.get((dataset, col["head"], col["metric"]), {})
            col_values = dict(sorted(col_values.items(), key=lambda kv: run_sort_key(kv[0], facts[kv[0]])))
            # a unimodal reference has no fusion: its "fusion" is its single head, shown, not ranked
            rankable = {r for r in col_values if not (col["head"] == "fusion" and facts[r]["reference"])}
            for run, st in _column_stats(col_values, rankable, alpha).items():
                stats[(dataset, run, col["head"], col["metric"])] = st
        first = 2 + sum(len(g["columns"]) + 1 for g in groups)  # LaTeX column index of the group's n
        groups.append(
            {"dataset": dataset, "columns": columns, "expected": expected_by_ds.get(dataset, 1),
             "first_col": first, "last_col": first + len(columns)}
        )
    return groups, stats


def _rows(runs, groups, stats, finished) -> list[dict]:
    rows = []
    for run in runs:
        row_groups = []
        for g in groups:
            n = finished.get((g["dataset"], run))
            if n is None:
                row_groups.append(None)
                continue
            cells = [stats.get((g["dataset"], run, c["head"], c["metric"])) for c in g["columns"]]
            row_groups.append({"n": n, "n_label": _seed_label(n, g["expected"]), "cells": cells})
        rows.append({"run": run, "groups": row_groups})
    return rows


def _long_rows(runs, groups, stats) -> list[dict]:
    out = []
    for g in groups:
        for run in runs:
            for c in g["columns"]:
                st = stats.get((g["dataset"], run, c["head"], c["metric"]))
                if st is not None:
                    out.append({"dataset": g["dataset"], "run": run, "head": c["head"], "metric": c["metric"],
                                "metric_label": c["metric_label"], "n_label": _seed_label(st["n"], g["expected"]),
                                **st})
    return out


def _logit_notes(runs, facts) -> list[dict]:
    """One note per method of the table: what its per-modality logits are (from the records)."""
    notes, seen = [], set()
    for run in runs:
        method = facts[run]["method"]
        text = _modality_logits(facts[run])
        if text and method not in seen:
            seen.add(method)
            notes.append({"method": method, "text": text})
    return notes


def record_notes(records: list[dict], problems=()) -> tuple[list[dict], list[str]]:
    """Records split into rows by identity hash, and the notes every table and report lists
    once: rows split by config, old (schema 1) records, unreadable and partial records."""
    records, notes = split_by_identity(records)
    old = old_record_note(records)
    notes += [old] if old else []
    notes += [p.line() if hasattr(p, "line") else str(p) for p in problems]
    return records, notes


def missing_rule_notes(records: list[dict], select: str) -> list[str]:
    """A note per run whose finished seeds have no ``select`` epoch (``protocol=official`` runs have
    no val split and report ``test-best``): they are named, never left out of a table silently."""
    missing: dict[tuple, list] = {}
    for rec in records:
        if rec.get("status") == "finished" and not (rec.get("selection") or {}).get(select):
            key = (rec.get("dataset"), rec.get("run"), rec.get("reported_rule", "?"))
            missing.setdefault(key, []).append(rec.get("seed"))
    return [
        f"{ds}/{run}: {len(seeds)} finished seed(s) have no {select!r} selection (their reported rule is "
        f"{rule!r}); show them with --select {rule}"
        for (ds, run, rule), seeds in sorted(missing.items(), key=str)
    ]


def build_tables(
    records: list[dict],
    layout: str = "table1",
    metrics=None,
    select: str = "val",
    split: str = "test",
    expected: int | None = None,
    alpha: float = DEFAULT_ALPHA,
    problems=(),
) -> dict:
    """The data every table template renders (see the module docstring for the layouts).
    ``problems``: the ``store.RecordProblem`` list of ``scan_results`` (unreadable, partial records),
    listed in the notes with the config splits and old records."""
    if layout not in LAYOUT_METRICS:
        raise ValueError(f"unknown layout {layout!r}; choose {', '.join(LAYOUT_METRICS)}")
    metrics = tuple(metrics) if metrics else LAYOUT_METRICS[layout]
    records, caveats = record_notes(records, problems)
    caveats += missing_rule_notes(records, select)
    frame = results_frame(records, select, split)
    frame = frame[frame["metric"].isin(metrics)]
    finished, expected_by_ds = seed_counts(records, frame, expected)
    values = _values(frame)
    facts = run_facts(records)
    groups, stats = _dataset_groups(frame, values, facts, layout, metrics, expected_by_ds, alpha)
    runs = sorted({r for (_, r, _, _) in values}, key=lambda r: run_sort_key(r, facts[r]))
    return {
        "layout": layout,
        "groups": groups,
        "rows": _rows(runs, groups, stats, finished),
        "long_rows": _long_rows(runs, groups, stats),
        "metrics": [METRIC_LABELS.get(m, m) for m in metrics],
        "multi_metric": len(metrics) > 1,
        "split": split,
        "select": select,
        "select_label": SELECTION_LABELS[select],
        "alpha": alpha,
        "notes": _logit_notes(runs, facts) if layout != "table2" else [],
        "caveats": caveats,
        "failed": sorted(failed_runs(records), key=lambda r: (r["dataset"], r["run"], r["seed"])),
    }


def _latex_escape(s) -> str:
    table = {
        "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    }
    return "".join(table.get(ch, ch) for ch in str(s))


def template_env() -> jinja2.Environment:
    """The jinja2 environment of ``mmbench/report_templates`` (HTML templates autoescaped)."""
    loader = jinja2.FileSystemLoader(str(resources.files("mmbench").joinpath("report_templates")))
    env = jinja2.Environment(
        loader=loader,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["latex_escape"] = _latex_escape
    env.filters["html_escape"] = lambda s: jinja2.utils.markupsafe.escape(str(s))
    env.filters["fmt"] = lambda x: f"{x:.2f}"
    env.filters["pfmt"] = lambda p: "n/a" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")
    return env


def per_seed_csv(records: list[dict], metrics=METRIC_NAMES, select: str = "val", split: str = "test") -> str:
    """Per-seed values (fractions, as stored) of finished runs, one row per (run, seed, head,
    metric); runs that mix configs are split into one row name per config, as in the tables."""
    frame = results_frame(split_by_identity(records)[0], select, split)
    frame = frame[frame["metric"].isin(metrics)]
    frame = frame.sort_values(["dataset", "run", "seed", "head", "metric"], kind="stable")
    return frame.to_csv(index=False)


def render_table(
    records: list[dict],
    fmt: str = "md",
    metrics=None,
    select: str = "val",
    layout: str = "table1",
    split: str = "test",
    expected: int | None = None,
    alpha: float = DEFAULT_ALPHA,
    standalone: bool = False,
    problems=(),
) -> str:
    """Render mean ± std over seeds of ``metrics`` in ``layout``; ``csv`` gives per-seed values."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose {', '.join(FORMATS)}")
    return LAYOUTS.get(layout)(records, fmt=fmt, metrics=metrics, select=select, split=split, expected=expected,
                               alpha=alpha, standalone=standalone, problems=problems)


def _grid_layout(layout: str):
    """The renderer of a layout of ``build_tables`` (table1, table2, long)."""

    def render(records, fmt, metrics, select, split, expected, alpha, standalone, problems) -> str:
        if fmt == "csv":
            return per_seed_csv(records, tuple(metrics) if metrics else METRIC_NAMES, select, split)
        ctx = build_tables(records, layout, metrics, select, split, expected, alpha, problems)
        ctx["standalone"] = standalone
        ctx["table"] = dict(ctx)
        return template_env().get_template(_TEMPLATE[fmt]).render(**ctx)

    return render


def _cost_layout(records, fmt, metrics, select, split, expected, alpha, standalone, problems) -> str:
    from mmbench.reporting.cost_table import render_cost

    return render_cost(records, fmt, problems)


def _probe_layout(records, fmt, metrics, select, split, expected, alpha, standalone, problems) -> str:
    from mmbench.reporting.probe_table import render_probe

    return render_probe(records, fmt, metrics, select, split, expected, alpha, standalone, problems)


# Table layouts by name: a renderer (records, fmt, metrics, select, split, expected, alpha,
# standalone, problems) -> text; ``LAYOUTS.register(render, name)`` adds one.
LAYOUTS: Registry = Registry("layout", listing="mmbench table --help")
for _name in LAYOUT_METRICS:
    LAYOUTS.register(_grid_layout(_name), _name)
LAYOUTS.register(_probe_layout, "probe")
LAYOUTS.register(_cost_layout, "cost")
