"""matplotlib figures of the HTML report, returned as embeddable ``data:image/png;base64`` URIs.

Figures are built with ``matplotlib.figure.Figure`` (Agg canvas, no pyplot state), so reports can
be made in any process without a display. Each method keeps one colour across all figures of a
dataset. Curves show the mean over seeds as a line and mean ± std as a band.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

DPI = 80
_PANEL_W, _PANEL_H, _LEGEND_W = 3.4, 2.8, 1.7  # inches; a fixed layout (no tight bbox: one draw)
_LEGEND_ROWS = 12


def colours(runs: list[str]) -> dict[str, tuple]:
    """A fixed colour per run (tab10; tab20 for more than ten runs, cycling beyond twenty)."""
    cmap = colormaps["tab10"] if len(runs) <= 10 else colormaps["tab20"]
    return {run: cmap(i % cmap.N) for i, run in enumerate(runs)}


def to_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _legend_columns(entries: int) -> int:
    return 1 + (entries - 1) // _LEGEND_ROWS if entries else 1


def _figure(panels: int, width: float | None = None, height: float = _PANEL_H, left: float = 0.75,
            legend_entries: int = 1) -> tuple[Figure, list]:
    """``panels`` axes in a row, with a margin on the right for a legend of ``legend_entries``
    (at most ``_LEGEND_ROWS`` rows per column; sizes in inches)."""
    width = width if width is not None else _PANEL_W * panels
    total = width + _LEGEND_W * _legend_columns(legend_entries)
    fig = Figure(figsize=(total, height))
    fig.subplots_adjust(left=left / total, right=(width - 0.1) / total, bottom=0.5 / height,
                        top=1 - 0.3 / height, wspace=0.35)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def _legend(fig: Figure, handles: dict) -> None:
    """``handles``: label -> artist, in legend order; placed in the right margin."""
    if handles:
        right = fig.subplotpars.right
        fig.legend(list(handles.values()), list(handles), loc="center left", bbox_to_anchor=(right + 0.01, 0.5),
                   fontsize="x-small" if len(handles) > 8 else "small", frameon=False,
                   ncols=_legend_columns(len(handles)), handlelength=1.5, columnspacing=0.8)


def _bands(ax, series: list[tuple[pd.DataFrame, tuple]]) -> None:
    """Mean lines and mean ± std bands of several runs as one LineCollection and one
    PolyCollection (far fewer artists than one plot + fill_between per run)."""
    lines, polys, colours = [], [], []
    for sub, colour in series:
        x = sub["epoch"].to_numpy(dtype=float)
        m = sub["mean"].to_numpy(dtype=float)
        s = sub["std"].to_numpy(dtype=float)
        lines.append(np.column_stack([x, m]))
        polys.append(np.concatenate([np.column_stack([x, m + s]), np.column_stack([x[::-1], (m - s)[::-1]])]))
        colours.append(colour)
    if not lines:
        return
    ax.add_collection(PolyCollection(polys, facecolors=colours, alpha=0.18, linewidths=0))
    ax.add_collection(LineCollection(lines, colors=colours, linewidths=1.4))
    ax.autoscale_view()


def _proxies(runs, colour, present) -> dict:
    return {run: Line2D([], [], color=colour[run], lw=1.4) for run in runs if run in present}


def curves_figure(bands: pd.DataFrame, heads: list[str], runs: list[str], colour, ylabel: str,
                  skip=lambda run, head: False) -> str:
    """One panel per head; per run the mean over seeds and a mean ± std band (``bands`` has
    run, head, epoch, mean, std)."""
    fig, axes = _figure(len(heads), legend_entries=len(runs))
    by_key = dict(tuple(bands.groupby(["run", "head"], sort=False)))
    drawn = set()
    for ax, head in zip(axes, heads):
        series = []
        for run in runs:
            sub = by_key.get((run, head))
            if sub is None or skip(run, head):
                continue
            series.append((sub, colour[run]))
            drawn.add(run)
        _bands(ax, series)
        ax.set_title(head)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    _legend(fig, _proxies(runs, colour, drawn))
    return to_data_uri(fig)


def single_curve_figure(bands: pd.DataFrame, runs: list[str], colour, ylabel: str, title: str,
                        reference: float | None = None) -> str:
    """One panel; per run a mean line and band (``bands`` has run, epoch, mean, std)."""
    fig, (ax,) = _figure(1, legend_entries=len(runs))
    by_run = dict(tuple(bands.groupby("run", sort=False)))
    _bands(ax, [(by_run[run], colour[run]) for run in runs if run in by_run])
    if reference is not None:
        ax.axhline(reference, color="k", lw=0.8, ls="--")
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    _legend(fig, _proxies(runs, colour, by_run))
    return to_data_uri(fig)


def unimodal_vs_fusion_figure(summary: pd.DataFrame, heads: list[str], runs: list[str], ylabel: str) -> str:
    """Grouped bars: per run, the selected-epoch mean (± std over seeds) of each head
    (``summary`` has run, head, mean, std in percent)."""
    fig, (ax,) = _figure(1, width=max(4.0, 0.22 * len(runs) * len(heads) + 1.5), height=_PANEL_H + 1.0, left=1.2,
                         legend_entries=len(heads))
    fig.subplots_adjust(bottom=1.3 / (_PANEL_H + 1.0))
    head_colour = {h: colormaps["Set2"](i) for i, h in enumerate(heads)}
    width = 0.8 / max(len(heads), 1)
    x = np.arange(len(runs))
    table = {(r, h): (m, s) for r, h, m, s in summary[["run", "head", "mean", "std"]].itertuples(index=False)}
    for j, head in enumerate(heads):
        vals = [table.get((run, head), (np.nan, 0.0)) for run in runs]
        ax.bar(x + (j - (len(heads) - 1) / 2) * width, [v[0] for v in vals], width,
               yerr=[v[1] for v in vals], color=head_colour[head], label=head, capsize=2, ecolor="#444")
    ax.set_xticks(x, runs, rotation=40, ha="right", fontsize="small")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    _legend(fig, dict(zip(labels, handles)))
    return to_data_uri(fig)
