r"""Paper-shaped tables: our mean ± std beside the number the sustained-boosting paper reports.

``mmbench table --paper`` (and ``mmbench reproduce``) render the paper's Tables 1-6 from run
records only. Each cell holds our value (mean ± std over the finished seeds of one run, at the
epoch ``select`` picks, ×100), the reported value (``mmbench/paper/aug_reported.csv``, ×100) and
the difference ours − reported in percentage points. A table whose records are missing still
shows every reported value (our cells "–"), so the target is visible before anything is run.

Shapes (as printed in the paper):

* ``table1`` / ``table3``: rows are methods; per dataset Multi (``fusion``), then each modality;
  Acc. OGM-GE and PMR on NVGesture print "–" (two-modality methods). Runs of methods the paper
  has no row for (``unimodal-*`` references, ``joint``) are rows of their own.
* ``table2``: per dataset, fusion Acc and MacroF1.
* ``table4``-``table6``: the ablation settings of sustained boosting on CREMA-D; rows are the
  paper's settings, matched to the runs of the suite ``paper_tableN`` by run name (the suite's
  ``paper_row``); our settings without a reported counterpart (``label``) are rows of their own.

A row never mixes configs: every run (run name and, where records carry one, identity hash) is
its own row; two runs matched to one paper row are two rows, each labelled with its run name.
"""

from __future__ import annotations

import csv
import io

import numpy as np

from mmbench.paper.reported import PAPER, PAPER_SELECTION, Reported, table_values
from mmbench.reporting.aggregate import METRIC_LABELS, SELECTION_LABELS, results_frame, template_env
from mmbench.results.registry import BASELINE_METHOD

TITLES = {
    "table1": "Table 1: CREMA-D, Kinetics-Sounds, NVGesture (accuracy)",
    "table2": "Table 2: Twitter-15 and Sarcasm (accuracy and MacroF1)",
    "table3": "Table 3: VGGSound (accuracy)",
    "table4": "Table 4: loss-term ablation on CREMA-D (accuracy and MAP)",
    "table5": "Table 5: fixed vs adaptive classifier assignment on CREMA-D (accuracy)",
    "table6": "Table 6: weight of the added classifiers on CREMA-D (accuracy)",
}
LAYOUT_TABLES = {"table1": ("table1", "table3"), "table2": ("table2",), "long": ("table1", "table2", "table3")}
ABLATION_TABLES = ("table4", "table5", "table6")
_TEMPLATE = {"md": "paper_table.md.j2", "latex": "paper_table.tex.j2", "html": "paper_table.html.j2"}


def head_label(head: str) -> str:
    """The paper's column names: Multi, Audio, Video, RGB, OF, Depth, Text, Image."""
    if head == "fusion":
        return "Multi"
    return head.upper() if len(head) <= 3 else head.capitalize()


def _columns(values: list[Reported]) -> list[dict]:
    """Column groups per dataset in the csv's order: (head, metric) pairs, metric-major for
    tables with two metrics (Table 4: Acc of every head, then MAP)."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for r in values:
        cols = groups.setdefault(r.dataset, [])
        if (r.head, r.metric) not in cols:
            cols.append((r.head, r.metric))
    out = []
    for dataset, cols in groups.items():
        metrics = list(dict.fromkeys(m for _, m in cols))
        ordered = [(h, m) for m in metrics for h, mm in cols if mm == m]
        out.append({
            "dataset": dataset,
            "columns": [{"head": h, "metric": m, "label": head_label(h) + (f" {METRIC_LABELS[m]}" if len(metrics) > 1 else "")}
                        for h, m in ordered],
        })
    return out


def _paper_rows(table: str, values: list[Reported], suite_rows: list[dict] | None) -> list[dict]:
    """The paper's rows: ``{"label", "method", "setting", "runs"}``; ``runs`` is ``None`` (match
    every run of the method: tables 1-3) or the run names the row is matched to (tables 4-6)."""
    if table not in ABLATION_TABLES:  # the csv lists the methods in the paper's row order
        methods = list(dict.fromkeys(r.method for r in values))
        return [{"label": m, "method": m, "setting": "", "runs": None} for m in methods]
    by_setting = {s["paper_row"]: s["run"] for s in suite_rows or [] if s.get("paper_row")}
    rows = []
    for setting in dict.fromkeys(r.setting for r in values):
        method = next(r.method for r in values if r.setting == setting)
        run = by_setting.get(setting)
        rows.append({"label": setting, "method": method, "setting": setting, "runs": [run] if run else []})
    for s in suite_rows or []:
        if s.get("label") and not s.get("paper_row"):
            rows.append({"label": s["label"], "method": s["method"], "setting": None, "runs": [s["run"]]})
    return rows


def _run_key(run: str, method: str) -> tuple:
    """Rows of our own runs: unimodal references first, then joint, then the rest by name; the
    plain run of a method before its tagged runs."""
    rank = {"unimodal": 0, BASELINE_METHOD: 1}.get(method, 2)
    return (rank, method, run != method, run)


def _run_groups(records: list[dict], datasets, select: str, split: str) -> dict:
    """(dataset, run, identity hash) -> {"method", "values": {(head, metric): array}, "n"}."""
    keep = [r for r in records if r.get("dataset") in datasets]
    frame = results_frame(keep, select, split)
    ident = {(r["dataset"], r["run"], r["seed"]): (r.get("identity") or {}).get("hash") for r in keep}
    groups: dict[tuple, dict] = {}
    for row in frame.sort_values("seed", kind="stable").itertuples(index=False):
        key = (row.dataset, row.run, ident.get((row.dataset, row.run, row.seed)))
        g = groups.setdefault(key, {"method": row.method, "values": {}, "seeds": set()})
        g["values"].setdefault((row.head, row.metric), []).append(row.value)
        g["seeds"].add(row.seed)
    return groups


def _configs_of(runs: dict, run: str | None) -> list[tuple]:
    """The rows of one run name: (label suffix, dataset -> group). Records of one (dataset, run)
    with different identity hashes are different configurations, so they go to different rows
    (row i holds each dataset's i-th hash); one hash per dataset is one row."""
    by_ds: dict[str, list] = {}
    for d, r, ident in runs:
        if r == run:
            by_ds.setdefault(d, []).append(ident)
    for idents in by_ds.values():
        idents.sort(key=str)
    n = max((len(v) for v in by_ds.values()), default=1)
    out = []
    for i in range(n):
        split = {d: v[i] for d, v in by_ds.items() if len(v) > 1 and i < len(v)}
        suffix = " (config " + ", ".join(f"{d} {str(h)[:8]}" for d, h in split.items()) + ")" if n > 1 else ""
        out.append((suffix, lambda d, i=i: runs.get((d, run, by_ds[d][i])) if i < len(by_ds.get(d, [])) else None))
    return out


def _cell(values, reported: Reported | None) -> dict:
    ours = np.asarray(values, dtype=float) * 100 if values else None
    rep = None if reported is None or reported.value is None else 100 * reported.value
    cell = {"mean": None, "std": None, "reported": rep, "diff": None}
    if ours is not None and len(ours):
        cell["mean"] = float(ours.mean())
        cell["std"] = float(ours.std(ddof=1)) if len(ours) > 1 else 0.0
        if rep is not None:
            cell["diff"] = cell["mean"] - rep
    return cell


def _row(label, run, method, setting, table, groups_spec, group_of, lookup) -> dict:
    """One table row: per dataset group its seed count and cells (``None`` where the dataset
    has neither our run nor a reported value for this row)."""
    out = []
    for g in groups_spec:
        found = group_of(g["dataset"])
        reported_any = False
        cells = []
        for c in g["columns"]:
            rep = lookup.get((g["dataset"], method, setting, c["head"], c["metric"]))
            reported_any |= rep is not None
            cells.append(_cell(found["values"].get((c["head"], c["metric"])) if found else None, rep))
        if found is None and not reported_any:
            out.append(None)
        else:
            out.append({"n": len(found["seeds"]) if found else 0, "cells": cells})
    return {"label": label, "run": run, "groups": out}


def build_paper_table(table: str, records: list[dict], select: str = "val", split: str = "test",
                      datasets=None, suite_rows: list[dict] | None = None) -> dict:
    """The data of one paper table (see the module docstring); ``suite_rows`` (tables 4-6) are
    ``{"run", "method", "paper_row" | "label"}`` from the table's suite."""
    values = table_values(table)
    if datasets:
        values = [v for v in values if v.dataset in datasets]
    groups_spec = _columns(values)
    names = [g["dataset"] for g in groups_spec]
    lookup = {(v.dataset, v.method, v.setting if table in ABLATION_TABLES else "", v.head, v.metric): v for v in values}
    runs = _run_groups(records, names, select, split)
    rows, used = [], set()
    for prow in _paper_rows(table, values, suite_rows):
        names_ = sorted({k[1] for k in runs if runs[k]["method"] == prow["method"]
                         and (prow["runs"] is None or k[1] in prow["runs"])}, key=lambda r: _run_key(r, prow["method"]))
        setting = prow["setting"] if table in ABLATION_TABLES else ""
        for run in names_ or [None]:
            for suffix, group_of in _configs_of(runs, run):
                used |= {k for k in runs if k[1] == run}
                plain = len(names_) <= 1 and (run in (None, prow["method"]) or prow["runs"] is not None)
                label = (prow["label"] if plain else f"{prow['label']} [{run}]") + suffix
                rows.append(_row(label, run, prow["method"], setting, table, groups_spec, group_of, lookup))
    if table not in ABLATION_TABLES:  # our runs without a paper row: references and joint first
        extra = sorted({(k[1], runs[k]["method"]) for k in runs if k not in used}, key=lambda t: _run_key(*t))
        refs = [_row(run + suffix, run, method, None, table, groups_spec, group_of, lookup)
                for run, method in extra for suffix, group_of in _configs_of(runs, run)]
        rows = refs + rows
    notes = sorted({v.note for v in values if v.note and v.value is not None})
    return {
        "table": table, "title": TITLES[table], "subject": TITLES[table].split(": ", 1)[1],
        "number": table.removeprefix("table"), "groups": groups_spec, "rows": rows, "notes": notes,
        "select": select, "select_label": SELECTION_LABELS[select], "split": split, "paper": PAPER,
        "paper_select": PAPER_SELECTION, "unmatched": len({k for k in runs if k not in used}) if table in ABLATION_TABLES else 0,
    }


def paper_csv(tables: list[dict]) -> str:
    """One row per cell: table, dataset, row, run, head, metric, n, ours (mean, std), reported, diff (all in %)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "dataset", "row", "run", "head", "metric", "n", "mean", "std", "reported", "diff"])
    fmt = lambda x: "" if x is None else f"{x:.4f}"  # noqa: E731
    for t in tables:
        for r in t["rows"]:
            for g, rg in zip(t["groups"], r["groups"]):
                if rg is None:
                    continue
                for c, cell in zip(g["columns"], rg["cells"]):
                    w.writerow([t["table"], g["dataset"], r["label"], r["run"] or "", c["head"], c["metric"], rg["n"],
                                fmt(cell["mean"]), fmt(cell["std"]), fmt(cell["reported"]), fmt(cell["diff"])])
    return buf.getvalue()


def render_paper_tables(tables: list[dict], fmt: str = "md", standalone: bool = False) -> str:
    """Render built paper tables as ``md``, ``latex``, ``html`` (a standalone page) or ``csv``."""
    if fmt == "csv":
        return paper_csv(tables)
    if fmt not in _TEMPLATE:
        raise ValueError(f"unknown format {fmt!r}; choose md, latex, html or csv")
    return template_env().get_template(_TEMPLATE[fmt]).render(tables=tables, standalone=standalone)


def tables_for(layout: str, paper_tables=None) -> tuple[str, ...]:
    """The paper tables ``mmbench table --paper`` shows: ``--paper-table`` if given, else the
    tables of the layout (``table1``: Tables 1 and 3, which share its shape; ``table2``: Table 2)."""
    return tuple(paper_tables) if paper_tables else LAYOUT_TABLES[layout]
