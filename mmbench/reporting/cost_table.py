"""``mmbench table --layout cost``: the cost of each method next to the ``joint`` baseline.

Reads the ``"cost"`` block of run records only (``benchmark/cost.py`` writes it): per dataset and
run, the mean over finished seeds of trainable parameters, GFLOPs of one training step, MFLOPs per
evaluation sample, wall seconds per epoch (train, eval) and peak memory (MiB; CUDA allocated
memory or the process's peak RSS on CPU, as the record's ``kind`` says), each with its ratio to
the dataset's ``joint`` run with the same tag (``×joint``). Records without a cost block are listed, not dropped.
"""

from __future__ import annotations

import numpy as np

from mmbench.reporting.aggregate import run_facts, run_sort_key
from mmbench.reporting.simple_table import html_page, render_plain
from mmbench.results.registry import BASELINE_METHOD

# (column, unit label, how to read it from a cost block)
COLUMNS = (
    ("params", "k", lambda c: c["params"]["total"] / 1e3),
    ("GFLOPs/step", "", lambda c: c["flops"]["train_step"] / 1e9),
    ("MFLOPs/eval sample", "", lambda c: c["flops"]["eval_per_sample"] / 1e6),
    ("train s/epoch", "", lambda c: c["seconds_per_epoch"]["train"]),
    ("eval s/epoch", "", lambda c: c["seconds_per_epoch"]["eval"]),
    ("peak memory", "MiB", lambda c: c["peak_memory"]["bytes"] / 2**20),
)
REFERENCE = BASELINE_METHOD


def cost_values(records: list[dict]) -> tuple[dict, list[str]]:
    """``{(dataset, run): {"n", "method", column: [values per seed]}}`` and the runs lacking cost."""
    out: dict[tuple, dict] = {}
    missing = []
    for rec in records:
        if rec.get("status") != "finished":
            continue
        cost = rec.get("cost")
        if not cost:
            missing.append(f"{rec['dataset']}/{rec['run']} seed {rec['seed']}")
            continue
        entry = out.setdefault(
            (rec["dataset"], rec["run"]), {"n": 0, "method": rec.get("method"), "tag": rec.get("tag"), "kinds": set()}
        )
        entry["n"] += 1
        entry["kinds"].add(cost.get("peak_memory", {}).get("kind"))
        for name, _, read in COLUMNS:
            try:
                value = read(cost)
            except (KeyError, TypeError):  # e.g. flops None: the record's cost.flops.error says why
                value = None
            entry.setdefault(name, []).append(value)
    return out, missing


def reference_run(values: dict, dataset: str, run: str) -> dict | None:
    """The ``joint`` run a row is compared with: the one with the same tag (the same overrides),
    else the dataset's only ``joint`` run, else none."""
    joints = [v for (d, _), v in values.items() if d == dataset and v["method"] == REFERENCE]
    same_tag = [v for v in joints if v["tag"] == values[(dataset, run)]["tag"]]
    if len(same_tag) == 1:
        return same_tag[0]
    return joints[0] if len(joints) == 1 else None


def _mean(values):
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _cell(value, ref) -> list[str]:
    if value is None:
        return ["–", "–"]
    ratio = f"{value / ref:.2f}" if ref else "–"
    return [f"{value:.4g}", ratio]


def render_cost(records: list[dict], fmt: str = "md", problems=()) -> str:
    """The cost tables (one per dataset) in ``fmt``; ``problems`` (unreadable and partial seeds,
    ``store.scan_results``) are listed after them."""
    values, missing = cost_values(records)
    headers = ["method", "n"]
    for name, unit, _ in COLUMNS:
        headers += [f"{name} ({unit})" if unit else name, "×joint"]
    parts = []
    csv_rows = []
    for dataset in sorted({d for d, _ in values}):
        facts = run_facts([r for r in records if r["dataset"] == dataset])
        runs = sorted((r for d, r in values if d == dataset), key=lambda r: run_sort_key(r, facts.get(r)))
        rows = []
        for run in runs:
            v = values[(dataset, run)]
            ref = reference_run(values, dataset, run)
            row = [run, str(v["n"])]
            for name, _, _ in COLUMNS:
                row += _cell(_mean(v[name]), _mean(ref[name]) if ref else None)
            rows.append(row)
            csv_rows.append([dataset] + row)
        kinds = sorted({k for (d, _), v in values.items() if d == dataset for k in v["kinds"] if k})
        notes = [
            "Mean over finished seeds. FLOPs: torch FlopCounterMode on one real training step (forward, "
            "backward, optimiser) and on predict for one eval batch; matmul/conv family only. Peak memory: "
            + ", ".join(kinds) + (" (a process-wide high-water mark)" if any("rss" in k for k in kinds) else "")
            + ". ×joint: ratio to the joint run of the dataset."
        ]
        parts.append(render_plain(f"{dataset}: cost per method", headers, rows, fmt, notes))
    if fmt == "csv":
        return render_plain("", ["dataset"] + headers, csv_rows, "csv")
    if missing:
        parts.append(render_plain("Runs without a cost block (trained before cost was recorded; retrain with --rerun)",
                                  ["run"], [[m] for m in missing], fmt))
    if problems:
        parts.append(render_plain("Records left out (unreadable or partial)", ["record"],
                                  [[p.line()] for p in problems], fmt))
    text = "\n".join(parts) if parts else "No finished runs with a cost block found.\n"
    return html_page("mmbench cost", text) if fmt == "html" else text
