"""Report figures of the probes: accuracy against cost, and the imbalance scores of the probes.

Reads run records (their ``cost`` block and val-rule metrics) and ``probe.json`` only. Each
figure is a PNG data URI; each run keeps the colour the report gives it.

1. fused test accuracy (val-selected epoch) against GFLOPs per training step and against train
   seconds per epoch: one point per run, mean ± std over seeds as error bars;
2. the probe-accuracy ratio (strongest over weakest modality) per run, and the Shapley
   contributions of each modality to the fused test accuracy, mean ± std over seeds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmbench.probe.record import RULE, is_current, read_probe
from mmbench.reporting.plots import _PANEL_H, _PANEL_W, to_data_uri
from mmbench.results.errors import MMBenchError


def _figure(panels: int, bottom: float = 0.28):
    """``panels`` side by side with room below them (``bottom``: fraction for legend or labels)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(_PANEL_W * panels + 1.8, _PANEL_H + 0.6 + 2 * max(bottom - 0.28, 0)))
    width = 0.8 / panels
    axes = [fig.add_axes([0.09 + i * (width + 0.06), bottom, width - 0.04, 0.9 - bottom]) for i in range(panels)]
    return fig, axes


def _mean_std(values):
    vals = np.asarray([v for v in values if v is not None], dtype=float)
    if not len(vals):
        return None, None
    return float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0


def cost_points(records: list[dict]) -> dict[str, dict]:
    """Per run: (mean, std) of fused test Acc (%), GFLOPs/step and train s/epoch."""
    by_run: dict[str, list] = {}
    for rec in records:
        sel = (rec.get("selection") or {}).get(RULE)
        if rec.get("status") == "finished" and rec.get("cost") and sel:
            by_run.setdefault(rec["run"], []).append((rec, sel))
    out = {}
    for run, items in by_run.items():
        out[run] = {
            "acc": _mean_std(100 * s["test"]["fusion"]["acc"] for _, s in items),
            "gflops": _mean_std(r["cost"]["flops"]["train_step"] / 1e9 for r, _ in items),
            "seconds": _mean_std(r["cost"]["seconds_per_epoch"]["train"] for r, _ in items),
        }
    return out


def accuracy_vs_cost_figure(points: dict, runs: list[str], colour) -> str:
    fig, axes = _figure(2, bottom=0.2 + 0.035 * ((len(points) + 2) // 3))
    for ax, key, label in zip(axes, ("gflops", "seconds"), ("GFLOPs per training step", "train s/epoch")):
        for run in [r for r in runs if r in points]:
            (x, xe), (y, ye) = points[run][key], points[run]["acc"]
            if x is None or y is None:
                continue
            ax.errorbar([x], [y], xerr=[xe], yerr=[ye], fmt="o", color=colour[run], label=run, capsize=2)
        ax.set_xlabel(label)
        ax.set_ylabel("fused test Acc (%)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, max(1, len(labels))), fontsize=6, frameon=False)
    return to_data_uri(fig)


def probe_scores(records: list[dict]) -> dict[str, dict]:
    """Per run with current probes: (mean, std) of the probe ratio and of each Shapley value (pts)."""
    by_run: dict[str, list] = {}
    for rec in records:
        if rec.get("status") != "finished":
            continue
        try:
            probe = read_probe(Path(rec["path"]))
        except MMBenchError:  # damaged: the probe table lists it; the figure leaves the run out
            continue
        if is_current(probe, rec):
            by_run.setdefault(rec["run"], []).append(probe)
    out = {}
    for run, probes in by_run.items():
        mods = probes[0]["modalities"]
        out[run] = {
            "ratio": _mean_std(p["imbalance"]["probe_ratio"]["value"] for p in probes),
            "shapley": {m: _mean_std(100 * p["imbalance"]["shapley"]["values"][m] for p in probes) for m in mods},
        }
    return out


def probe_ratio_figure(scores: dict, runs: list[str], colour) -> str:
    runs = [r for r in runs if r in scores]
    fig, (left, right) = _figure(2, bottom=0.45)
    x = np.arange(len(runs))
    ratio = [scores[r]["ratio"] for r in runs]
    left.bar(x, [m or 0 for m, _ in ratio], yerr=[s or 0 for _, s in ratio], color=[colour[r] for r in runs], capsize=2)
    left.axhline(1.0, color="grey", lw=0.8, ls="--")
    left.set_ylabel("probe ratio (max/min Acc)")
    mods = list(next(iter(scores.values()))["shapley"]) if scores else []
    width = 0.8 / max(len(mods), 1)
    for i, m in enumerate(mods):
        vals = [scores[r]["shapley"].get(m, (None, None)) for r in runs]
        right.bar(x + (i - (len(mods) - 1) / 2) * width, [v or 0 for v, _ in vals], width,
                  yerr=[s or 0 for _, s in vals], label=m, capsize=2)
    right.set_ylabel("Shapley contribution (Acc points)")
    right.legend(fontsize=7, frameon=False)
    for ax in (left, right):
        ax.set_xticks(x)
        ax.set_xticklabels(runs, rotation=30, ha="right", fontsize=6)
        ax.grid(alpha=0.3, axis="y")
    return to_data_uri(fig)


def cost_and_probe_figures(records: list[dict], runs: list[str], colour) -> list[dict]:
    """The figures of one dataset's records (none when no record has a cost block or probes)."""
    figures = []
    points = cost_points(records)
    if points:
        figures.append({
            "title": "Accuracy against cost",
            "caption": "fused test Acc at the best validation epoch against GFLOPs of one training step "
                       "(FlopCounterMode) and train seconds per epoch; mean ± std over seeds.",
            "uri": accuracy_vs_cost_figure(points, runs, colour),
        })
    scores = probe_scores(records)  # a damaged probe.json stops the report with one line naming it
    if scores:
        figures.append({
            "title": "Imbalance scores of the linear probes",
            "caption": "left: test Acc of the strongest modality's linear probe over the weakest's (1 = "
                       "balanced); right: exact Shapley contributions of each modality to the fused test Acc "
                       "(masked modalities at their train-mean features); mean ± std over seeds.",
            "uri": probe_ratio_figure(scores, runs, colour),
        })
    return figures
