"""The numbers the sustained-boosting paper reports (Tables 1-6), read from the shipped
``aug_reported.csv`` (one value a row; ``README.md`` next to it documents the columns).

Each value keeps its table, dataset, method, setting (the ablation row of Tables 4-6; empty
otherwise), head (``fusion`` = the paper's "Multi", else a modality), metric (``acc``, ``map``,
``f1``), the value as a fraction (``None`` where the paper prints a dash) and the note. The paper
reports single runs at the best test epoch (the ``test-best`` rule).
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from importlib import resources

PAPER = "Jiang, Huang, Yang, NeurIPS 2025 (arXiv 2502.20120 v1)"
PAPER_SELECTION = "test-best"
TABLES = ("table1", "table2", "table3", "table4", "table5", "table6")


@dataclass(frozen=True)
class Reported:
    table: str
    dataset: str
    method: str
    setting: str
    head: str
    metric: str
    value: float | None
    note: str = ""


def _parse(text: str) -> list[Reported]:
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        value = row["value"].strip()
        rows.append(
            Reported(row["table"], row["dataset"], row["method"], row["setting"].strip(), row["head"],
                     row["metric"], float(value) if value else None, row["note"].strip())
        )
    return rows


@functools.cache
def reported_values() -> tuple[Reported, ...]:
    """Every reported value, in the order of the csv (the paper's row and column order)."""
    text = resources.files("mmbench.paper").joinpath("aug_reported.csv").read_text(encoding="utf-8")
    return tuple(_parse(text))


def table_values(table: str) -> list[Reported]:
    """The reported values of one table (``table1`` .. ``table6``)."""
    if table not in TABLES:
        raise ValueError(f"unknown paper table {table!r}; choose {', '.join(TABLES)}")
    return [r for r in reported_values() if r.table == table]


def lookup(table: str, dataset: str, method: str, head: str, metric: str, setting: str = "") -> Reported | None:
    """The reported entry of one cell, or ``None`` where the paper has no such cell."""
    for r in table_values(table):
        if (r.dataset, r.method, r.setting, r.head, r.metric) == (dataset, method, setting, head, metric):
            return r
    return None
