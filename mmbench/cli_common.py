"""Pieces shared by the ``mmbench`` command modules: one-line errors, exit codes, the results
option and the record filters of ``table`` and ``report``."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from mmbench.errors import MMBenchError

EXIT_ERROR = 2
EXIT_FAILED_RUNS = 1
EXIT_INTERRUPTED = 130


def friendly_errors(fn):
    """Turn ``MMBenchError`` (and Ctrl-C) into one clear line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MMBenchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("interrupted: finished epochs and seeds are saved; rerun the same command to resume", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


def results_option(fn):
    return click.option(
        "--results",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Results root (default: $MMBENCH_RESULTS or ./results).",
    )(fn)


def results_root(results: Path | None) -> Path:
    from mmbench.benchmark.store import default_results_root

    return results if results is not None else default_results_root()


def table_options(fn):
    """Options shared by ``table`` and ``report``: which records, which epoch, which split."""
    for option in reversed(
        [
            results_option,
            click.option("--dataset", "-d", "datasets", multiple=True, help="Only these datasets (repeatable)."),
            click.option("--method", "-m", "methods", multiple=True, help="Only these methods or runs (repeatable)."),
            click.option(
                "--select",
                type=click.Choice(["val", "last", "test-best"]),
                default="val",
                show_default=True,
                help="Selection rule; test-best is the papers' (optimistic) protocol.",
            ),
            click.option(
                "--split", type=click.Choice(["test", "val"]), default="test", show_default=True,
                help="Split whose metrics are reported.",
            ),
            click.option(
                "--seeds", "expected", type=click.IntRange(min=1), default=None,
                help="Expected seeds per method (default: the most any method has); fewer show as n/N.",
            ),
            click.option(
                "--alpha", type=click.FloatRange(0, 1), default=0.05, show_default=True,
                help="Welch's t-test level for the mark against each column's best.",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def scan_records(results, datasets, methods, include_tuning: bool = False):
    """``store.scan_results`` of the results root: the readable records and the problems
    (unreadable, partial); an error only when there is nothing at all to show."""
    from mmbench.benchmark.store import scan_results

    root = results_root(results)
    scan = scan_results(root, datasets or None, methods or None, include_tuning)
    if not scan.records and not scan.problems:
        raise MMBenchError(f"no run records under {root}: train with `mmbench run` first, or pass --results DIR")
    return scan


def echo_problems(problems, where: str) -> None:
    """One stderr line saying how many records were not usable and where they are listed."""
    if problems:
        kinds = sorted({p.kind for p in problems})
        click.echo(f"note: {len(problems)} {'/'.join(kinds)} record(s), listed in {where}: {problems[0].line()}"
                   + (" ..." if len(problems) > 1 else ""), err=True)


def load_records(results, datasets, methods) -> list[dict]:
    """The readable records (problems named on stderr; ``scan_records`` gives both)."""
    scan = scan_records(results, datasets, methods)
    for problem in scan.problems:
        click.echo(f"note: {problem.line()}", err=True)
    return scan.records


def parse_roots(items) -> dict:
    """``--root DATASET=DIR`` items (repeatable) as ``{dataset: dir}``."""
    out = {}
    for item in items:
        if "=" not in item:
            raise MMBenchError(f"--root expects DATASET=DIR, got {item!r}")
        k, v = item.split("=", 1)
        out[k] = v
    return out
