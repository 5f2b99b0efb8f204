"""``mmbench sync`` and ``mmbench export``: thin click commands over ``mmbench/trackers`` and
``mmbench/api.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mmbench.cli.options import EXIT_FAILED_RUNS, friendly_errors, results_option, results_root

LOGGER_CHOICE = click.Choice(["tensorboard", "wandb", "mlflow", "csv"])


@click.command()
@click.option(
    "--logger",
    "loggers",
    multiple=True,
    required=True,
    type=LOGGER_CHOICE,
    help="Tracker to replay the records into, repeatable.",
)
@results_option
@click.option("--dataset", "-d", "datasets", multiple=True, help="Only these datasets (repeatable).")
@click.option("--method", "-m", "methods", multiple=True, help="Only these methods or runs (repeatable).")
@friendly_errors
def sync(loggers, results, datasets, methods):
    """Replay finished (and failed) records into trackers: the epochs each tracker has not
    received, from history.jsonl. Safe to repeat: a second sync logs nothing."""
    from mmbench.trackers.sync import sync_results

    root = results_root(results)
    report = sync_results(
        root, loggers, datasets or None, methods or None, warn=lambda t: click.echo(t, err=True)
    )
    for problem in report.problems:
        click.echo(f"note: {problem.line()}", err=True)
    click.echo(
        f"sync {', '.join(loggers)}: {report.runs} records under {root}; {len(report.updated)} got "
        f"{report.steps} new steps, {report.runs - len(report.updated)} already up to date"
        + (f"; {len(report.failures)} failed" if report.failures else "")
    )
    if report.failures:
        for line in report.failures:
            click.echo(f"  failed {line}", err=True)
        sys.exit(EXIT_FAILED_RUNS)


@click.command()
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="File to write.")
@results_option
@click.option("--dataset", "-d", "datasets", multiple=True, help="Only these datasets (repeatable).")
@click.option("--method", "-m", "methods", multiple=True, help="Only these methods or runs (repeatable).")
@click.option("--config", "with_config", is_flag=True, help="Add the records' settings as config.* columns.")
@friendly_errors
def export(fmt, out, results, datasets, methods, with_config):
    """Write the tidy results frame (mmbench.load_results: one row per run x seed x head x
    selection rule x split x metric) as parquet (needs pyarrow) or csv."""
    from mmbench.api import check_export_format, load_results, write_frame
    from mmbench.results.errors import MMBenchError

    check_export_format(fmt)
    root = results_root(results)
    frame = load_results(root, datasets or None, methods or None, config=with_config, warn=False)
    for kind in ("unreadable", "partial"):
        for item in frame.attrs[kind]:
            click.echo(f"note: {kind} {item['path']}: {item['message']}", err=True)
    if frame.empty and not frame.attrs["unreadable"]:
        raise MMBenchError(
            f"no finished run records under {root}: train with `mmbench run` first, or pass --results DIR"
        )
    write_frame(frame, out, fmt)
    click.echo(
        f"wrote {out}: {len(frame)} rows, {frame['run'].nunique()} runs, {frame['seed'].nunique()} seeds"
    )
