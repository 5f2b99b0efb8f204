"""The "paper vs mmbench" section of ``mmbench report``: the paper's tables with our runs beside
the reported numbers (only tables that hold at least one of our runs), the figures that are pure
functions of the records (Fig. 3 sensitivity where sustained_boost runs vary sigma or lambda,
Fig. 4 where runs log first-classifier heads), and any PNG figures in ``figures_dir`` (what
``mmbench figure`` / ``mmbench reproduce`` wrote, e.g. the t-SNE of Fig. 5, which needs the
checkpoints and the data) with the caption file written next to each.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from mmbench.paper import figures
from mmbench.reporting.report import SECTIONS

REPORT_DPI = 110


def _uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=REPORT_DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _varies(records, key: str) -> bool:
    return len({(r.get("config") or {}).get("method", {}).get(key) for r in records}) > 1


def record_figures(records: list[dict], select: str, split: str) -> list[dict]:
    """Fig. 3 and Fig. 4 per dataset, where the records allow them."""
    out = []
    for dataset in sorted({r["dataset"] for r in records if r.get("status") == "finished"}):
        recs = [r for r in records if r["dataset"] == dataset and r.get("status") == "finished"]
        boost = [r for r in recs if r["method"] == "sustained_boost"]
        if _varies(boost, "sigma") or _varies(boost, "smoothing"):
            fig, caption = figures.sensitivity_figure(boost, select=select, split=split)
            out.append({"title": f"{dataset}: sensitivity to sigma and lambda (paper Fig. 3)", "caption": caption,
                        "uri": _uri(fig)})
        for run, run_recs in figures.first_classifier_runs(recs).items():
            fig, caption = figures.classifiers_figure(run_recs, split)
            out.append({"title": f"{dataset}/{run}: full ensemble vs first classifier (paper Fig. 4)",
                        "caption": caption, "uri": _uri(fig)})
    return out


def dir_figures(figures_dir) -> list[dict]:
    """Every ``*.png`` of ``figures_dir`` with its ``.txt`` caption, as embeddable figures."""
    out = []
    for png in sorted(Path(figures_dir).glob("*.png")):
        cap = png.with_suffix(".txt")
        out.append({"title": png.stem, "caption": cap.read_text(encoding="utf-8").strip() if cap.is_file() else "",
                    "uri": "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")})
    return out


def paper_section(records: list[dict], select: str, split: str, figures_dir=None) -> dict:
    from mmbench.paper.reported import TABLES
    from mmbench.paper.suites import build_paper_tables

    tables = [t for t in build_paper_tables(records, TABLES, select, split)
              if any(g and g["n"] for r in t["rows"] for g in r["groups"])]
    figs = record_figures(records, select, split) + (dir_figures(figures_dir) if figures_dir else [])
    return {"tables": tables, "figures": figs}


SECTIONS.register(paper_section, "paper")
