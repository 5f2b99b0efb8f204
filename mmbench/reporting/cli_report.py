"""``mmbench report``: the standalone HTML report (tables + per-dataset figures).

Added to the ``mmbench`` group in ``mmbench/cli.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from mmbench.cli_common import echo_problems, friendly_errors, scan_records, table_options


@click.command()
@table_options
@click.option(
    "--metric", "metrics", multiple=True, type=click.Choice(["acc", "map", "f1"]),
    help="Metrics of the Table 1 section (default all).",
)
@click.option("--title", default="mmbench report", show_default=True)
@click.option("--jobs", "-j", type=click.IntRange(min=0), default=0, show_default=True,
              help="Processes drawing the figures (one dataset each); 0: one per dataset up to the CPUs.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"),
              show_default=True, help="The HTML file to write.")
@click.option("--figures", "figures_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Also embed the PNG figures of DIR (written by `mmbench figure` or `mmbench reproduce`).")
@friendly_errors
def report(results, datasets, methods, select, split, expected, alpha, metrics, title, jobs, out, figures_dir):
    """One standalone HTML file: the tables and, per dataset, accuracy curves per head, the
    imbalance ratio, classifier counts (sustained_boost) and unimodal-versus-fusion bars."""
    from mmbench.reporting.report import build_report, default_jobs

    t0 = time.time()
    scan = scan_records(results, datasets, methods)
    records = scan.records
    jobs = jobs or default_jobs(len({r["dataset"] for r in records}))
    html = build_report(records, select, split, metrics or None, expected, alpha, title=title, jobs=jobs,
                        problems=scan.problems, figures_dir=figures_dir)
    echo_problems(scan.problems, f"the report's notes ({out})")
    from mmbench.benchmark.store import write_text

    write_text(out, html)  # a disk fault: one line naming the path (DiskError, exit 1)
    click.echo(f"wrote {out} ({len(records)} run records, {time.time() - t0:.1f} s)")
