"""``mmbench report``: one standalone HTML file (``report.html.j2``) with the tables and, per
dataset, matplotlib figures embedded as PNG data URIs:

1. accuracy of fusion and of each modality over epochs, per method (mean line, mean ± std band
   over seeds); ``unimodal-*`` runs appear only in their modality's panel;
2. the imbalance ratio over epochs (definition in ``curves.py``);
3. the classifier count per modality over epochs, for runs that log
   ``diagnostics["classifiers"]`` (methods whose ensembles grow);
4. a bar chart of unimodal versus fusion accuracy at the selected epoch (mean ± std over seeds);
5. accuracy against cost, and the probe ratio and Shapley contributions (``probe_figures.py``);
6. the sections registered in ``SECTIONS`` (the paper's comparison: ``mmbench.paper.report``).

Drawing dominates the cost (about 0.7 s of CPU per dataset with 20 methods); with ``jobs > 1``
the datasets are drawn in forked worker processes (Linux), giving the same bytes.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

from mmbench.reporting import curves, plots, probe_figures
from mmbench.reporting.aggregate import (
    METRIC_LABELS,
    build_tables,
    head_order,
    record_notes,
    results_frame,
    run_facts,
    run_sort_key,
    summarise,
    template_env,
)
from mmbench.reporting.significance import DEFAULT_ALPHA
from mmbench.results.registry import Registry

# Sections that packages above reporting add to the report: name -> function (records, select,
# split, figures_dir) -> dict for ``report.html.j2``. The built-in one is the paper's comparison
# with its reported numbers, registered by ``mmbench.paper.report`` when imported.
SECTIONS: Registry = Registry("report section", builtins={"paper": "mmbench.paper.report"})


def dataset_figures(dataset: str, histories, summary, split: str, metric: str,
                    select_label: str = "selected epoch") -> list[dict]:
    """The figures of one dataset: dicts with ``title``, ``caption`` and ``uri``."""
    hist = [(r, h) for r, h in histories if r["dataset"] == dataset]
    curve = curves.curves_frame(hist, split, metric)
    facts = run_facts([r for r, _ in hist])
    runs = sorted(facts, key=lambda r: run_sort_key(r, facts[r]))
    colour = plots.colours(runs)
    label = f"{split} {METRIC_LABELS.get(metric, metric)} (%)"
    figures = []
    if not curve.empty:
        curve["value"] = 100 * curve["value"]
        heads = head_order(curve["head"].unique())
        figures.append({
            "title": f"{METRIC_LABELS.get(metric, metric)} of fusion and of each modality over epochs",
            "caption": f"{split} {METRIC_LABELS.get(metric, metric)} per epoch: mean over seeds (line) "
                       "and mean ± std (band).",
            "uri": plots.curves_figure(
                curves.band(curve, ["run", "head"]), heads, runs, colour, label,
                skip=lambda run, head: head == "fusion" and facts[run]["reference"],
            ),
        })
        ratio = curves.imbalance_frame(curve)
        if not ratio.empty and ratio["value"].notna().any():
            figures.append({
                "title": "Imbalance ratio over epochs",
                "caption": f"max over modalities / min over modalities of the {split} "
                           f"{METRIC_LABELS.get(metric, metric)} of the modality heads, per epoch "
                           "(1 = balanced); mean over seeds and mean ± std band.",
                "uri": plots.single_curve_figure(
                    curves.band(ratio.dropna(subset=["value"]), ["run"]), runs, colour,
                    "max/min " + METRIC_LABELS.get(metric, metric), "imbalance ratio", reference=1.0,
                ),
            })
    clf = curves.classifier_frame(hist)
    if not clf.empty:
        clf_bands = curves.band(clf.rename(columns={"modality": "head"}), ["run", "head"], value="n")
        figures.append({
            "title": "Classifiers per modality over epochs",
            "caption": "number of classifiers per modality (diagnostics.classifiers) after each epoch; "
                       "mean over seeds and mean ± std band.",
            "uri": plots.curves_figure(
                clf_bands, head_order(clf["modality"].unique()),
                [r for r in runs if r in set(clf["run"])], colour, "classifiers",
            ),
        })
    sub = summary[(summary["dataset"] == dataset) & (summary["metric"] == metric)].copy()
    if not sub.empty:
        sub["mean"] *= 100
        sub["std"] *= 100
        keep = ~((sub["head"] == "fusion") & sub["run"].map(lambda r: r in facts and facts[r]["reference"]))
        sub = sub[keep]
        figures.append({
            "title": "Unimodal versus fusion accuracy",
            "caption": f"{split} {METRIC_LABELS.get(metric, metric)} of each head at the {select_label}; "
                       "mean ± std over seeds.",
            "uri": plots.unimodal_vs_fusion_figure(sub, head_order(sub["head"].unique()),
                                                   [r for r in runs if r in set(sub["run"])], label),
        })
    figures += probe_figures.cost_and_probe_figures([r for r, _ in hist], runs, colour)
    return figures


def _figures_job(args) -> list[dict]:
    return dataset_figures(*args)


def figure_jobs(n_datasets: int) -> int:
    """Worker processes for ``n_datasets``: one per dataset up to the CPUs (max 8); 1 where
    ``fork`` is unavailable (spawned workers would re-import everything)."""
    if sys.platform != "linux":
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(n_datasets, cpus, 8))


def _relabel(histories, records) -> list:
    """The histories with each record replaced by its row-labelled copy (matched by path)."""
    by_path = {r.get("path"): r for r in records}
    return [(by_path.get(rec.get("path"), rec), h) for rec, h in histories]


def build_report(
    records: list[dict],
    select: str = "val",
    split: str = "test",
    metrics=None,
    expected: int | None = None,
    alpha: float = DEFAULT_ALPHA,
    curve_metric: str = "acc",
    title: str = "mmbench report",
    jobs: int = 1,
    problems=(),
    figures_dir=None,
) -> str:
    """The report's HTML text (standalone: CSS inline, figures as data URIs). ``problems``
    (``store.scan_results``) and damaged histories are listed once, in the report's notes."""
    histories, history_problems = curves.load_histories_checked(records)
    problems = [*problems, *history_problems]
    table1 = build_tables(records, "table1", metrics, select, split, expected, alpha, problems)
    table2 = build_tables(records, "table2", None, select, split, expected, alpha)
    records = record_notes(records)[0]  # rows split by config, as in the tables
    histories = _relabel(histories, records)
    summary = summarise(results_frame(records, select, split))
    names = sorted({r["dataset"] for r in records if r.get("status") == "finished"})
    tasks = [
        (d, [(r, h) for r, h in histories if r["dataset"] == d], summary[summary["dataset"] == d], split, curve_metric,
         table1["select_label"])
        for d in names
    ]
    if jobs > 1 and len(tasks) > 1:
        from mmbench.results.workers import pool_worker_init

        # forked workers: default SIGTERM (not the CLI's KeyboardInterrupt), gone with the parent
        with multiprocessing.get_context("fork").Pool(min(jobs, len(tasks)), initializer=pool_worker_init) as pool:
            figures = pool.map(_figures_job, tasks, chunksize=1)
    else:
        figures = [_figures_job(t) for t in tasks]
    datasets = [{"name": d, "figures": f} for d, f in zip(names, figures)]
    sections = {name: SECTIONS.get(name)(records, select, split, figures_dir) for name in SECTIONS.names()}
    return template_env().get_template("report.html.j2").render(
        title=title,
        table1=table1,
        table2=table2,
        failed=table1["failed"],
        datasets=datasets,
        n_records=len(records),
        n_finished=sum(r.get("status") == "finished" for r in records),
        select_label=table1["select_label"],
        split=split,
        paper=sections.get("paper"),
    )
