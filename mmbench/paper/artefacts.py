"""The paper's tables and figures as files (``mmbench reproduce``, ``mmbench table --paper``).

Which tables and figures a suite reproduces is its ``[paper]`` section (``mmbench.paper.suites``).
"""

from __future__ import annotations

from pathlib import Path

from mmbench.paper.suites import build_paper_tables as build_tables
from mmbench.results.errors import MMBenchError

FORMATS = {"md": "md", "latex": "tex", "html": "html"}


def paper_table_text(records, datasets, select, split, layout, fmt, standalone, paper_tables) -> str:
    """``mmbench table --paper``: every format; no records still shows the reported values."""
    from mmbench.paper.table import render_paper_tables, tables_for

    tables = build_tables(records, tables_for(layout, paper_tables), select, split, datasets or None)
    if not tables:
        raise MMBenchError(f"the paper's tables have no column for dataset(s) {', '.join(datasets)}")
    return render_paper_tables(tables, fmt, standalone)


def write_artefacts(paper: dict, records, out: Path, select: str, extra: dict, roots: dict, echo=print) -> None:
    """The suite's paper tables (md, tex, html) and figures (PDF, PNG) into ``out``."""
    from mmbench.paper.figure_files import write_figures
    from mmbench.paper.table import render_paper_tables

    out.mkdir(parents=True, exist_ok=True)
    if paper.get("tables"):
        tables = build_tables(records, paper["tables"], select, "test", extra=extra)
        for fmt, ext in FORMATS.items():
            path = out / f"{'_'.join(paper['tables'])}.{ext}"
            path.write_text(render_paper_tables(tables, fmt, standalone=fmt == "latex"), encoding="utf-8")
            echo(f"wrote {path}")
    for name in paper.get("figures", []):
        write_figures(name, records, out, select, "test", 0, roots, echo=echo)
