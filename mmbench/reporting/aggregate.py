"""Tables are pure functions of run records: load ``result.json`` files into pandas, aggregate
mean ± std over seeds, render a jinja2 template (``mmbench/report_templates/``)."""

from __future__ import annotations

from importlib import resources

import jinja2
import numpy as np
import pandas as pd

from mmbench.benchmark.metrics import METRIC_NAMES
from mmbench.benchmark.selection import SELECTION_RULES

SELECTION_LABELS = {
    "val": "best validation epoch (val)",
    "last": "last epoch",
    "test-best": "best test epoch (test-best: the papers' protocol, optimistic)",
}
FORMATS = ("md", "latex", "html", "csv")
_TEMPLATE = {"md": "table.md.j2", "latex": "table.tex.j2", "html": "table.html.j2"}


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
                rows.append(
                    {
                        "dataset": rec["dataset"],
                        "run": rec["run"],
                        "method": rec["method"],
                        "tag": rec.get("tag"),
                        "seed": rec["seed"],
                        "epoch": sel["epoch"],
                        "head": head,
                        "metric": metric,
                        "value": value,
                    }
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


def _head_order(heads, modalities_first=("fusion",)) -> list[str]:
    """``fusion`` first, then the modalities in the order the records list them (dataset order)."""
    return [h for h in modalities_first if h in heads] + [h for h in heads if h not in modalities_first]


def table_context(frame: pd.DataFrame, metrics=METRIC_NAMES, select: str = "val") -> dict:
    """The data the table templates render: one table per dataset."""
    summary = summarise(frame)
    tables = []
    for dataset in summary["dataset"].unique() if len(summary) else []:
        sub = summary[summary["dataset"] == dataset]
        heads = _head_order(list(dict.fromkeys(sub["head"])))
        columns = [(h, m) for h in heads for m in metrics]
        rows = []
        for run in sorted(sub["run"].unique()):
            r = sub[sub["run"] == run]
            cells = []
            for h, m in columns:
                hit = r[(r["head"] == h) & (r["metric"] == m)]
                if hit.empty:
                    cells.append(None)
                else:
                    x = hit.iloc[0]
                    cells.append({"mean": 100 * x["mean"], "std": 100 * x["std"], "n": int(x["n"])})
            n = int(r["n"].max())
            rows.append({"run": run, "cells": cells, "n": n})
        tables.append({"dataset": dataset, "columns": columns, "rows": rows})
    return {
        "tables": tables,
        "select": select,
        "select_label": SELECTION_LABELS[select],
        "metric_names": {"acc": "Acc", "map": "MAP", "f1": "MacroF1"},
    }


def _env() -> jinja2.Environment:
    loader = jinja2.FileSystemLoader(str(resources.files("mmbench").joinpath("report_templates")))
    env = jinja2.Environment(loader=loader, autoescape=False, trim_blocks=True, lstrip_blocks=True)
    env.filters["latex_escape"] = lambda s: str(s).replace("_", r"\_").replace("&", r"\&").replace("%", r"\%")
    env.filters["html_escape"] = lambda s: jinja2.utils.markupsafe.escape(str(s))
    return env


def render_table(records: list[dict], fmt: str = "md", metrics=METRIC_NAMES, select: str = "val") -> str:
    """Render mean ± std over seeds of ``metrics`` for fusion and every modality."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose {', '.join(FORMATS)}")
    frame = results_frame(records, select)
    frame = frame[frame["metric"].isin(metrics)]
    if fmt == "csv":
        return frame.to_csv(index=False)
    ctx = table_context(frame, metrics, select)
    ctx["failed"] = failed_runs(records)
    return _env().get_template(_TEMPLATE[fmt]).render(**ctx)
