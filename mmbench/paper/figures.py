"""The sustained-boosting paper's Figures 3-5 from run records (``mmbench figure NAME``).

* ``sensitivity`` (Fig. 3): test accuracy of fusion and of each modality at the selected epoch
  against the ACA threshold sigma (``method.sigma``) and against the smoothing factor lambda
  (``method.smoothing``), one panel each; mean ± std over seeds (error bars). A panel's runs vary
  only its parameter: every other setting equals that of the reference configuration (the most
  common one among the runs); runs that differ elsewhere are left out and counted in the caption.
* ``classifiers`` (Fig. 4): per modality, test accuracy over epochs of the modality's full
  ensemble F^m (head ``m``) and of its first classifier z^m_1 alone (head ``m_first``, logged by
  ``sustained_boost`` with ``method.log_first_classifier=true``), plus the fused prediction; last
  panel: the classifier count of each modality (``diagnostics.classifiers``). One run (one
  configuration) per figure: mean over its seeds (line) and mean ± std (band).
* ``tsne`` (Fig. 5): one panel per method (row) and modality (column): a 2-D t-SNE
  (scikit-learn, seeded) of the encoder outputs on the test split at the selected checkpoint,
  coloured by class.

Figures are ``matplotlib.figure.Figure`` objects (no pyplot state), written by ``save`` as a
vector PDF and a 300-dpi PNG.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from mmbench.paper.table import head_label
from mmbench.reporting import curves
from mmbench.reporting.aggregate import head_order
from mmbench.results.registry import Registry

SENSITIVITY_PARAMS = {"method.sigma": "ACA threshold $\\sigma$", "method.smoothing": "smoothing factor $\\lambda$"}
PNG_DPI = 300
_STYLE = {"font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7}


def _styled(fn):
    """Draw inside the figures' rc style (font sizes apply to text created while it is active)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import matplotlib as mpl

        with mpl.rc_context(_STYLE):
            return fn(*args, **kwargs)

    return wrapper


def _figure(n_panels: int, width: float = 2.6, height: float = 2.3, rows: int = 1) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width * n_panels, height * rows), layout="constrained")
    return fig, fig.subplots(rows, n_panels, squeeze=False)


def _integer_axis(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def save(fig: Figure, out_dir, name: str) -> list[Path]:
    """Write ``name.pdf`` (vector) and ``name.png`` (300 dpi) into ``out_dir``; return the paths."""
    import matplotlib as mpl

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.pdf", out_dir / f"{name}.png"]
    with mpl.rc_context({"pdf.fonttype": 42}):
        fig.savefig(paths[0], metadata={"CreationDate": None})
        fig.savefig(paths[1], dpi=PNG_DPI, metadata={"Software": None})
    return paths


# ---------------------------------------------------------------------------- Fig. 3
def _config_without(rec: dict, keys) -> str:
    """The record's training and method settings minus ``keys`` (dotted ``method.x``), as text."""
    import json

    cfg = rec.get("config") or {}
    method = {k: v for k, v in (cfg.get("method") or {}).items() if f"method.{k}" not in keys}
    return json.dumps({"train": cfg.get("train"), "method": method, "protocol": cfg.get("protocol"),
                       "m": rec.get("method"), "d": rec.get("dataset")}, sort_keys=True)


def sensitivity_points(records: list[dict], param: str, others, select: str = "val", split: str = "test"):
    """``{head: [(x, mean, std, n), ...]}`` for the runs that vary only ``param`` (see the module
    docstring) and how many finished runs were left out."""
    fin = [r for r in records if r.get("status") == "finished" and r.get("selection", {}).get(select)]
    if not fin:
        return {}, 0
    ref = Counter(_config_without(r, set(others) | {param}) for r in fin).most_common(1)[0][0]
    ref_others = Counter(
        tuple((r.get("config") or {}).get("method", {}).get(o.split(".", 1)[1]) for o in others) for r in fin
    ).most_common(1)[0][0]
    short = param.split(".", 1)[1]
    by_x: dict[float, dict[str, list[float]]] = {}
    left_out = 0
    for r in fin:
        m = (r.get("config") or {}).get("method", {})
        if _config_without(r, set(others) | {param}) != ref or m.get(short) is None:
            left_out += 1  # differs in a setting no panel varies
            continue
        if tuple(m.get(o.split(".", 1)[1]) for o in others) != ref_others:
            continue  # a point of another parameter's panel
        for head, metrics in r["selection"][select][split].items():
            by_x.setdefault(float(m[short]), {}).setdefault(head, []).append(100 * metrics["acc"])
    points: dict[str, list] = {}
    for x in sorted(by_x):
        for head, vals in by_x[x].items():
            v = np.asarray(vals)
            points.setdefault(head, []).append((x, v.mean(), v.std(ddof=1) if len(v) > 1 else 0.0, len(v)))
    return points, left_out


@_styled
def sensitivity_figure(records: list[dict], params=tuple(SENSITIVITY_PARAMS), select: str = "val",
                       split: str = "test") -> tuple[Figure, str]:
    """Fig. 3: one panel per parameter; returns the figure and its caption."""
    fig, axes = _figure(len(params))
    notes = []
    for ax, param in zip(axes[0], params):
        others = [p for p in params if p != param]
        points, left_out = sensitivity_points(records, param, others, select, split)
        for head in head_order(h for h in points if not h.endswith("_first")):
            xs, means, stds, _ = zip(*points[head])
            ax.errorbar(xs, means, yerr=stds, marker="o", ms=3, capsize=2, lw=1.2, label=head_label(head))
        ax.set_xlabel(SENSITIVITY_PARAMS.get(param, param))
        ax.set_ylabel(f"{split} accuracy (%)")
        ax.grid(alpha=0.3)
        if points:
            ax.legend(frameon=False)
        else:
            ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)
        if left_out:
            notes.append(f"{left_out} run(s) differing in other settings left out of the {param} panel")
    caption = (f"{split} accuracy at the {select} epoch against each parameter, the other at its reference value; "
               "mean ± std over seeds." + (" " + "; ".join(notes) + "." if notes else ""))
    return fig, caption


# ---------------------------------------------------------------------------- Fig. 4
def _band(ax, sub, label, **style):
    ax.plot(sub["epoch"], sub["mean"], label=label, lw=1.3, **style)
    ax.fill_between(sub["epoch"], sub["mean"] - sub["std"], sub["mean"] + sub["std"], alpha=0.2, lw=0,
                    color=ax.lines[-1].get_color())


def first_classifier_runs(records: list[dict]) -> dict[str, list[dict]]:
    """The finished records of each run (one configuration each) that logs first-classifier heads."""
    out: dict[str, list[dict]] = {}
    for r, h in curves.load_histories(records):
        if h and any(k.endswith("_first") for k in (h[-1].get("test") or {})):
            out.setdefault(r["run"], []).append(r)
    return out


@_styled
def classifiers_figure(records: list[dict], split: str = "test") -> tuple[Figure, str]:
    """Fig. 4 from the ``sustained_boost`` runs whose history has ``<m>_first`` heads."""
    hist = [(r, h) for r, h in curves.load_histories(records)
            if h and any(k.endswith("_first") for k in (h[-1].get(split) or {}))]
    if not hist:
        raise ValueError("no finished run logs first-classifier heads: run sustained_boost with "
                         "--set method.log_first_classifier=true (suite paper_fig4)")
    configs = {(r["run"], (r.get("identity") or {}).get("hash")) for r, _ in hist}
    if len(configs) > 1:
        raise ValueError(f"records of {len(configs)} configurations ({', '.join(sorted(c[0] for c in configs))}): "
                         "draw one run at a time (first_classifier_runs)")
    acc = curves.curves_frame(hist, split, "acc")
    acc["value"] = 100 * acc["value"]
    mods = [h for h in head_order(acc["head"].unique()) if h != "fusion" and not h.endswith("_first")]
    band = curves.band(acc, ["head"])
    fig, axes = _figure(len(mods) + 1)
    for ax, m in zip(axes[0], mods):
        _band(ax, band[band["head"] == m], "full ensemble")
        _band(ax, band[band["head"] == f"{m}_first"], "first classifier", ls="--")
        _band(ax, band[band["head"] == "fusion"], "Multi (fused)", ls=":")
        ax.set_title(f"{head_label(m)}: full ensemble vs first classifier")
        ax.set_ylabel(f"{split} accuracy (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, ["full ensemble of the modality", "first classifier only", "Multi (fused)"],
               loc="outside lower center", ncols=3, frameon=False)
    clf = curves.classifier_frame(hist)
    ax = axes[0][-1]
    if not clf.empty:
        cb = curves.band(clf.rename(columns={"modality": "head"}), ["head"], value="n")
        for m, style in zip(head_order(cb["head"].unique()), ("-", "-.", "--", ":")):
            _band(ax, cb[cb["head"] == m], head_label(m), ls=style, color="k" if style == "-" else "0.45")
        ax.legend(frameon=False)
        _integer_axis(ax.yaxis)
    ax.set_title("classifiers per modality")
    ax.set_ylabel("number of classifiers")
    for ax in axes[0]:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        _integer_axis(ax.xaxis)
    run = next(iter(configs))[0]
    caption = (f"{run}: {split} accuracy per epoch of each modality's full ensemble and of its first classifier "
               f"alone, and the classifier count per modality; mean over {len(hist)} seed(s) (line) and "
               "mean ± std (band).")
    return fig, caption


# ---------------------------------------------------------------------------- Fig. 5
def tsne_embed(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D t-SNE (scikit-learn, PCA init, seeded); perplexity min(30, (N - 1) / 3). One BLAS/OpenMP
    thread: in a process that has imported torch, sklearn's thread pools otherwise contend with
    torch's (measured 41 s instead of 2.5 s for 300 points on 2 cores)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.asarray(features, dtype=np.float32)
    perplexity = float(min(30.0, max(1.0, (len(x) - 1) / 3)))
    with threadpool_limits(1):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


@_styled
def tsne_figure(embeddings: dict[str, dict[str, tuple]], seed: int = 0, class_names=None,
                row_labels: dict | None = None) -> tuple[Figure, str]:
    """Fig. 5: ``embeddings[run][modality] = (features [N, D], labels [N])``; rows are runs (by
    name, labelled by ``row_labels[run]`` where given), columns modalities."""
    runs = sorted(embeddings)
    mods = list(dict.fromkeys(m for r in runs for m in embeddings[r]))
    fig, axes = _figure(len(mods), width=2.3, height=2.3, rows=len(runs))
    n_classes = 1 + max(int(np.max(y)) for r in runs for _, y in embeddings[r].values())
    cmap = colormaps["tab10"] if n_classes <= 10 else colormaps["tab20"]
    for i, run in enumerate(runs):
        for j, m in enumerate(mods):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if m not in embeddings[run]:
                ax.set_axis_off()
                continue
            feats, labels = embeddings[run][m]
            xy = tsne_embed(np.asarray(feats), seed)
            labels = np.asarray(labels)
            ax.scatter(xy[:, 0], xy[:, 1], c=[cmap(int(k) % cmap.N) for k in labels], s=3, lw=0)
            if i == 0:
                ax.set_title(head_label(m))
            if j == 0:
                ax.set_ylabel(row_labels.get(run, run) if row_labels else run)
    names = class_names or [str(k) for k in range(n_classes)]
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", ms=4, color=cmap(k % cmap.N)) for k in range(n_classes)]
    fig.legend(handles, names[:n_classes], loc="outside lower center", ncols=min(n_classes, 5), frameon=False,
               title="class", handletextpad=0.2, columnspacing=0.8)
    caption = (f"t-SNE (scikit-learn, seed {seed}) of the test-split encoder outputs at the selected checkpoint; "
               "one panel per method and modality, coloured by class.")
    return fig, caption


# The paper's figures by name (``mmbench figure NAME``): Fig. 3, Fig. 4 and Fig. 5.
FIGURES: Registry = Registry("figure", listing="mmbench figure --help")
FIGURES.register(sensitivity_figure, "sensitivity")
FIGURES.register(classifiers_figure, "classifiers")
FIGURES.register(tsne_figure, "tsne")
