"""What the ``mmbench`` commands share, declared once: one-line errors and exit codes, the
``--results``, ``--root``, ``--jobs``, ``--device`` and ``--set`` options, the record filters of
``table`` and ``report``, and the ``--dry-run`` listing of ``sweep`` and ``reproduce``.

``--root`` has one grammar everywhere, ``[DATASET=]DIR``: ``DATASET=DIR`` names the data root of
one dataset; a bare ``DIR`` is the root itself when the command reads one dataset, else a folder
holding one sub-folder per dataset (as ``$MMBENCH_DATA``). ``parse_roots`` is its one parser.
"""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

import click

from mmbench.results.errors import MMBenchError, one_line

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
            click.echo(f"error: {one_line(exc)}", err=True)
            sys.exit(getattr(exc, "exit_code", EXIT_ERROR))  # DiskError: 1, as a failed run
        except KeyboardInterrupt:
            click.echo("interrupted: finished epochs and seeds are saved; rerun the same command to resume", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


# ---------------------------------------------------------------------------- --results
def results_option(fn):
    return click.option(
        "--results",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Results root (default: $MMBENCH_RESULTS or ./results).",
    )(fn)


def results_root(results: Path | None) -> Path:
    from mmbench.results.store import default_results_root

    return results if results is not None else default_results_root()


# ---------------------------------------------------------------------------- --root [DATASET=]DIR
ROOT_METAVAR = "[DATASET=]DIR"
_NAMED_ROOT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def root_option(fn):
    """``--root`` of a command that reads one dataset (``run``, ``data``, ``bench``)."""
    return click.option(
        "--root", default=None, metavar=ROOT_METAVAR, help="Data root (default $MMBENCH_DATA/<dataset>)."
    )(fn)


def roots_option(help_prefix: str = ""):
    """``--root`` of a command that reads several datasets (``sweep``, ``reproduce``, ``probe``,
    ``figure``): repeatable."""
    text = "data roots: DATASET=DIR (repeatable), or one DIR holding a folder per dataset."
    return click.option("--root", "roots", multiple=True, metavar=ROOT_METAVAR,
                        help=f"{help_prefix}{text}" if help_prefix else text[0].upper() + text[1:])


def parse_roots(items, datasets=()) -> dict[str, str]:
    """``--root`` values as ``{dataset: dir}``: ``DATASET=DIR`` as given; a bare ``DIR`` is the
    root of the one dataset in ``datasets``, else ``DIR/<dataset>`` for each of them (with no
    datasets to go by, only ``DATASET=DIR`` is understood)."""
    datasets = list(datasets)
    out = {}
    for item in items:
        named = _NAMED_ROOT.match(item)
        if named:
            out[named.group(1)] = named.group(2)
        elif not datasets:
            raise MMBenchError(f"--root expects DATASET=DIR, got {item!r}")
        elif len(datasets) == 1:
            out[datasets[0]] = item
        else:
            out.update({d: str(Path(item) / d) for d in datasets})
    return out


def dataset_root(item: str | None, dataset: str) -> Path | None:
    """The ``--root`` of a one-dataset command as a path (``None``: the dataset's default)."""
    if item is None:
        return None
    roots = parse_roots([item], [dataset])
    if dataset not in roots:
        raise MMBenchError(f"--root {item} names dataset {next(iter(roots))!r}, but the command reads {dataset!r}")
    return Path(roots[dataset])


# ---------------------------------------------------------------------------- --jobs, --device, --set
def jobs_option(help: str, default: int | None = 1, min_jobs: int = 1, short: bool = False):
    """``--jobs``: every count of processes a command starts is given with this one name."""
    names = ("--jobs", "-j") if short else ("--jobs",)
    return click.option(*names, "jobs", type=click.IntRange(min=min_jobs), default=default,
                        show_default=default is not None, help=help)


def device_option(help: str = "auto, cpu or cuda[:N].", default: str = "auto"):
    return click.option("--device", default=default, show_default=True, help=help)


def sets_option(help: str = "Config override, repeatable (e.g. epochs=5).", metavar: str = "KEY=VALUE"):
    return click.option("--set", "sets", multiple=True, metavar=metavar, help=help)


def select_option(fn):
    return click.option(
        "--select",
        type=click.Choice(["val", "last", "test-best"]),
        default="val",
        show_default=True,
        help="Selection rule; test-best is the papers' (optimistic) protocol.",
    )(fn)


def split_option(fn):
    return click.option(
        "--split", type=click.Choice(["test", "val"]), default="test", show_default=True,
        help="Split whose metrics are reported.",
    )(fn)


# ---------------------------------------------------------------------------- record filters
def filter_options(fn):
    """``--dataset`` and ``--method`` filters of the commands that read run records."""
    fn = click.option("--method", "-m", "methods", multiple=True, help="Only these methods or runs (repeatable).")(fn)
    return click.option("--dataset", "-d", "datasets", multiple=True, help="Only these datasets (repeatable).")(fn)


def table_options(fn):
    """Options shared by ``table`` and ``report``: which records, which epoch, which split."""
    for option in reversed(
        [
            results_option,
            filter_options,
            select_option,
            split_option,
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
    from mmbench.results.store import scan_results

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


# ---------------------------------------------------------------------------- --dry-run
def dry_run_option(help: str = "List the runs and their state; train nothing."):
    return click.option("--dry-run", is_flag=True, help=help)


def echo_plan(jobs, root_dir, echo=click.echo) -> tuple[list, bool]:
    """The ``--dry-run`` listing: one line per run, pending or done (skip, or the state that
    blocks it: a record of another config, an unreadable one). Returns the pending jobs and
    whether any run is blocked (the command then exits 1)."""
    from mmbench.benchmark.launch import plan

    todo, done = plan(jobs, root_dir, refuse=False)
    for j in todo:
        echo(f"  pending {j.label()}")
    for o in done:
        echo(f"  {'skip' if o.status == 'skipped' else o.status:<7} {o.job.label()}: {o.reason}")
    return todo, any(o.status in ("drift", "unreadable") for o in done)


LOGGERS = ("tensorboard", "wandb", "mlflow", "csv")


def logger_option(fn):
    """``--logger NAME`` (repeatable): the trackers a run feeds from its history (``train.loggers``)."""
    return click.option(
        "--logger", "loggers", multiple=True, type=click.Choice(LOGGERS),
        help="Log each epoch to this tracker, repeatable (same as --set train.loggers=[...]).",
    )(fn)
