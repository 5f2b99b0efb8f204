"""``mmbench run``: train one method on one dataset for each seed (``mmbench.benchmark.launch``)."""

from __future__ import annotations

import sys

import click

from mmbench.cli.options import (
    EXIT_FAILED_RUNS,
    EXIT_INTERRUPTED,
    dataset_root,
    device_option,
    friendly_errors,
    jobs_option,
    logger_option,
    results_option,
    results_root,
    root_option,
    sets_option,
)


@click.command()
@click.option("--method", "-m", required=True, help="Method name (see `mmbench list methods`).")
@click.option("--dataset", "-d", required=True, help="Dataset name (see `mmbench list datasets`).")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True, help="Number of seeds.")
@click.option("--seed-start", type=int, default=0, show_default=True, help="First seed.")
@root_option
@results_option
@sets_option()
@device_option()
@click.option("--tag", default=None, help="Run tag (default: named after the non-default overrides).")
@click.option("--rerun", is_flag=True, help="Train finished or failed seeds again.")
@jobs_option("Seeds trained at once, each in its own process (default: one per GPU, else one per CPU core).",
             default=None)
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the encoders (same as --set compile=true).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@logger_option
@friendly_errors
def run(method, dataset, seeds, seed_start, root, results, sets, device, tag, rerun, jobs, compile_, no_progress,
        loggers):
    """Train METHOD on DATASET for each seed; finished seeds are skipped, partial ones resume."""
    from mmbench.benchmark.config import parse_overrides, resolve_config

    overrides = parse_overrides(sets, once=True)
    if loggers:
        overrides["train.loggers"] = list(loggers)
    if compile_:
        overrides["compile"] = True
    resolve_config(dataset, method, overrides, seed=seed_start, tag=tag, device=device)  # validate first
    # imported after validation: a typo answers before torch loads
    from mmbench.benchmark.launch import OUTCOMES, failed_earlier, run_local

    outcomes = run_local(dataset, method, range(seed_start, seed_start + seeds), overrides, results_root(results),
                         root=dataset_root(root, dataset), device=device, tag=tag, rerun=rerun,
                         progress=not no_progress, echo=click.echo, n_jobs=jobs)
    counts = {s: sum(o.status == s for o in outcomes) for s in OUTCOMES}
    click.echo(_summary_line(counts, len(outcomes)))
    if counts["interrupted"]:
        sys.exit(EXIT_INTERRUPTED)
    failed_before = [o.job.seed for o in outcomes if failed_earlier(o)]
    if failed_before:
        which = (f"seeds {', '.join(map(str, failed_before))} have failed records" if len(failed_before) > 1
                 else f"seed {failed_before[0]} has a failed record")
        click.echo(f"{which}; --rerun trains them again")
    if counts["failed"] or failed_before:
        sys.exit(EXIT_FAILED_RUNS)


def _summary_line(counts: dict[str, int], n: int) -> str:
    if counts["skipped"] == n and n:
        return f"nothing to train: all {n} seeds already have records (use --rerun to retrain)"
    return (f"done: {counts['finished']} trained, {counts['skipped']} skipped, {counts['failed']} failed"
            + (f", {counts['interrupted']} interrupted" if counts["interrupted"] else "")
            + (f", {counts['busy']} being trained by another process" if counts["busy"] else ""))
