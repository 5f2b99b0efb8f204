"""The ``mmbench`` command line (click): run, table, list.

Every ``MMBenchError`` ends as one line on stderr (``error: ...``) and a non-zero exit; no
tracebacks for bad input.
"""

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


def _results_option(fn):
    return click.option(
        "--results",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Results root (default: $MMBENCH_RESULTS or ./results).",
    )(fn)


def _results_root(results: Path | None) -> Path:
    from mmbench.benchmark.store import default_results_root

    return results if results is not None else default_results_root()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mmbench")
def cli():
    """mmbench: fair benchmarks for imbalanced multimodal learning."""


@cli.command()
@click.option("--method", "-m", required=True, help="Method name (see `mmbench list methods`).")
@click.option("--dataset", "-d", required=True, help="Dataset name (see `mmbench list datasets`).")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True, help="Number of seeds.")
@click.option("--seed-start", type=int, default=0, show_default=True, help="First seed.")
@click.option("--root", type=click.Path(path_type=Path), default=None, help="Data root (default $MMBENCH_DATA/<dataset>).")
@_results_option
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Config override, repeatable (e.g. epochs=5).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--tag", default=None, help="Run tag (default: named after the non-default overrides).")
@click.option("--rerun", is_flag=True, help="Train finished or failed seeds again.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@friendly_errors
def run(method, dataset, seeds, seed_start, root, results, sets, device, tag, rerun, no_progress):
    """Train METHOD on DATASET for each seed; finished seeds are skipped, partial ones resume."""
    from mmbench.benchmark.config import parse_overrides, resolve_config
    from mmbench.benchmark.launch import run_local

    overrides = parse_overrides(sets)
    resolve_config(dataset, method, overrides, seed=seed_start, tag=tag, device=device)  # validate first
    outcomes = run_local(
        dataset,
        method,
        range(seed_start, seed_start + seeds),
        overrides,
        _results_root(results),
        root=root,
        device=device,
        tag=tag,
        rerun=rerun,
        progress=not no_progress,
        echo=click.echo,
    )
    counts = {s: sum(o.status == s for o in outcomes) for s in ("finished", "skipped", "failed", "interrupted")}
    if counts["skipped"] == len(outcomes) and outcomes:
        click.echo(f"nothing to train: all {len(outcomes)} seeds already have records (use --rerun to retrain)")
    else:
        click.echo(
            f"done: {counts['finished']} trained, {counts['skipped']} skipped, {counts['failed']} failed"
            + (f", {counts['interrupted']} interrupted" if counts["interrupted"] else "")
        )
    if counts["interrupted"]:
        sys.exit(EXIT_INTERRUPTED)
    if counts["failed"]:
        sys.exit(EXIT_FAILED_RUNS)


@cli.command()
@_results_option
@click.option("--dataset", "-d", "datasets", multiple=True, help="Only these datasets (repeatable).")
@click.option("--method", "-m", "methods", multiple=True, help="Only these methods or runs (repeatable).")
@click.option(
    "--metric", "metrics", multiple=True, type=click.Choice(["acc", "map", "f1"]), help="Metrics (default all)."
)
@click.option(
    "--select",
    type=click.Choice(["val", "last", "test-best"]),
    default="val",
    show_default=True,
    help="Selection rule; test-best is the papers' (optimistic) protocol.",
)
@click.option("--format", "fmt", type=click.Choice(["md", "latex", "html", "csv"]), default="md", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write to FILE.")
@friendly_errors
def table(results, datasets, methods, metrics, select, fmt, out):
    """Mean ± std over seeds of acc, MAP and MacroF1 for fusion and every modality."""
    from mmbench.benchmark.store import load_results
    from mmbench.reporting.aggregate import render_table

    root = _results_root(results)
    records = load_results(root, datasets or None, methods or None)
    if not records:
        raise MMBenchError(f"no run records under {root}: train with `mmbench run` first, or pass --results DIR")
    text = render_table(records, fmt, metrics or ("acc", "map", "f1"), select)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        click.echo(f"wrote {out}")
    else:
        click.echo(text)


@cli.command(name="list")
@click.argument("what", type=click.Choice(["methods", "datasets"]))
@friendly_errors
def list_(what):
    """List registered methods (with their package) or datasets."""
    from mmbench.benchmark import registry

    if what == "methods":
        for name in registry.method_names():
            cls = registry.get_method(name)
            doc = (cls.__module__ and (sys.modules[cls.__module__].__doc__ or "")).strip().splitlines()
            summary = doc[0] if doc else ""
            click.echo(f"{name:<18} {registry.method_origin(name):<24} {summary}")
        for name, err in registry.plugin_errors().items():
            click.echo(f"{name:<18} BROKEN PLUGIN: {err}")
    else:
        for name in registry.dataset_names():
            spec = registry.get_dataset(name)
            click.echo(f"{name:<18} {spec.num_classes:>4} classes  modalities: {', '.join(spec.modalities)}")


@cli.command()
@click.option("--dataset", "-d", required=True, help="Dataset name.")
@click.option("--method", "-m", "methods", multiple=True, help="Methods to time (joint is always added).")
@click.option("--root", type=click.Path(path_type=Path), default=None, help="Data root.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Config override, repeatable.")
@click.option("--device", default="auto", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=30, show_default=True, help="Timed steps per method.")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True, help="Interleaved rounds.")
@click.option("--append", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Append the markdown table to FILE (e.g. BENCHMARKS.md).")
@click.option("--note", default="", help="Free text added to the table heading.")
@friendly_errors
def bench(dataset, methods, root, sets, device, steps, warmup, rounds, append, note):
    """Steady-state training-step time: data wait vs compute, samples/s, ratio to joint."""
    from mmbench.benchmark.bench import benchmark, machine_description, markdown_table
    from mmbench.benchmark.config import parse_overrides

    results = benchmark(dataset, methods, parse_overrides(sets), root, device, steps, warmup, rounds)
    text = markdown_table(results, dataset, machine_description(device), note)
    click.echo(text)
    if append:
        with open(append, "a") as fh:
            fh.write("\n" + text)
        click.echo(f"appended to {append}")


def main():
    cli(prog_name="mmbench")


if __name__ == "__main__":
    main()
