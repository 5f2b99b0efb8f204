"""What a paper suite reproduces: its ``[paper]`` section and the table rows of its runs.

A suite's ``[paper]`` section (``mmbench/configs/suites/paper_*.toml``) names the paper tables
(``tables``) and figures (``figures``) it reproduces; its ``[[runs]]`` entries may carry
``paper_row`` (the reported setting of Tables 4-6 the run is matched to) or ``label`` (a setting
of ours the paper has no row for).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def suite_data(name: str) -> dict:
    """The raw TOML of a suite (a built-in name or a .toml path); ``{}`` where there is none."""
    from mmbench.benchmark.suites import read_suite

    path = Path(name)
    ref = resources.files("mmbench.configs").joinpath("suites", f"{name}.toml")
    if (path.suffix == ".toml" and path.exists()) or ref.is_file():
        return read_suite(name)[0]  # validated: one line per problem
    return {}


def suite_paper(name: str) -> dict:
    """The suite's ``[paper]`` section (``{}`` where it has none)."""
    return dict(suite_data(name).get("paper", {}))


def suite_rows(name: str, extra: dict | None = None) -> list[dict]:
    """``{"run", "method", "paper_row" | "label"}`` of the suite's entries that name a table row;
    ``run`` is the run name the entry resolves to (with the sweep's ``extra`` overrides)."""
    from mmbench.benchmark.config import resolve_config

    rows = []
    for entry in suite_data(name).get("runs", []):
        if not (entry.get("paper_row") or entry.get("label")):
            continue
        for dataset in entry.get("datasets", []):
            for method in entry.get("methods", []):
                cfg = resolve_config(dataset, method, {**entry.get("set", {}), **(extra or {})}, tag=entry.get("tag"))
                rows.append({"run": cfg.run_name, "method": method, "paper_row": entry.get("paper_row"),
                             "label": entry.get("label")})
    return rows


def build_paper_tables(records, tables, select, split, datasets=None, extra=None) -> list[dict]:
    """The paper tables ``tables`` built from ``records`` (ablation rows from their suites);
    tables with no column left after the ``datasets`` filter are dropped."""
    from mmbench.paper.reported import table_values
    from mmbench.paper.table import ABLATION_TABLES, build_paper_table

    out = []
    for t in tables:
        rows = None
        if t in ABLATION_TABLES:  # the suite's run names, needed only where there are runs to match
            wanted = {v.dataset for v in table_values(t)}
            rows = suite_rows(f"paper_{t}", extra) if any(r.get("dataset") in wanted for r in records) else []
        built = build_paper_table(t, records, select, split, datasets, rows)
        if built["groups"]:
            out.append(built)
    return out


