"""``mmbench tune``: equal-budget hyper-parameter tuning on validation folds (the logic is in
``mmbench/tuning/``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mmbench.cli.options import (
    EXIT_FAILED_RUNS,
    friendly_errors,
    parse_roots,
    results_option,
    results_root,
    roots_option,
)


@click.command("tune")
@click.argument("suite", required=False)
@click.option("--method", "-m", "methods", multiple=True, help="Method to tune (repeatable).")
@click.option("--dataset", "-d", "datasets", multiple=True, help="Dataset (repeatable).")
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Planned trials per study (plus one anchor trial at the published setting).",
)
@click.option(
    "--folds",
    type=click.IntRange(min=2),
    default=3,
    show_default=True,
    help="K stratified folds of train ∪ val (data.cv_folds); test is never used.",
)
@click.option(
    "--repeats", type=click.IntRange(min=1), default=1, show_default=True, help="Repeats of the K folds."
)
@click.option(
    "--metric",
    type=click.Choice(["acc", "map", "f1"]),
    default="acc",
    show_default=True,
    help="Objective: fusion val metric at each fold run's val-selected epoch.",
)
@click.option(
    "--sampler",
    type=click.Choice(["random", "sobol", "grid", "tpe"]),
    default="random",
    show_default=True,
    help="random (i.i.d., default), sobol (QMC), grid (categorical spaces), tpe (adaptive: no valid curve).",
)
@click.option("--study", "label", default=None, help="Study label (default: a hash of the command's spec).")
@click.option("--study-seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--space",
    "space_file",
    default=None,
    metavar="FILE.toml",
    help="Replace the declared search space; with --space alone and -m/-d: print the resolved space.",
)
@click.option("--show-space", is_flag=True, help="Print the resolved search space of -m/-d with sources.")
@click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Fixed for every trial and the final runs."
)
@click.option(
    "--storage",
    default=None,
    help="Optuna storage: journal file path (default RESULTS/_tune/optuna.journal), "
    "postgresql://..., mysql://..., sqlite:///... (one worker).",
)
@click.option("--journal-lock", type=click.Choice(["symlink", "open"]), default="symlink", show_default=True)
@click.option(
    "--jobs",
    "n_jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Local worker processes.",
)
@click.option("--launcher", type=click.Choice(["local", "slurm"]), default="local", show_default=True)
@click.option(
    "--array-tasks", "workers", type=click.IntRange(min=1), default=4, show_default=True,
    help="SLURM: worker tasks of the array (each claims trials from the ledger).",
)
@click.option("--partition", default=None, help="SLURM partition.")
@click.option("--gpus", type=int, default=1, show_default=True, help="SLURM GPUs per worker.")
@click.option("--cpus", type=int, default=8, show_default=True, help="SLURM CPUs per worker.")
@click.option(
    "--mem", "mem_gb", type=int, default=32, show_default=True, help="SLURM memory per worker (GB)."
)
@click.option(
    "--time", "time_min", type=int, default=24 * 60, show_default=True, help="SLURM time limit (minutes)."
)
@click.option(
    "--cluster",
    type=click.Choice(["auto", "slurm", "local", "debug"]),
    default="auto",
    show_default=True,
    help="submitit executor; 'local' runs the SLURM path on this machine.",
)
@results_option
@roots_option()
@click.option("--device", default="auto", show_default=True)
@click.option(
    "--keep-checkpoints",
    is_flag=True,
    help="Keep the trial runs' checkpoints (default: deleted once recorded).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show the space, the first plan rows, the run count and hours; write nothing.",
)
@click.option("--status", "show_status", is_flag=True, help="One line per study of the results directory.")
@click.option(
    "--final", "final", is_flag=True, help="Re-run each study's best configuration with fresh seeds."
)
@click.option(
    "--seeds", type=click.IntRange(min=1), default=5, show_default=True, help="--final: seeds 0..S-1."
)
@click.option("--seed-start", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--partial", is_flag=True, help="--final before every planned trial finished.")
@click.option("--rebuild-ledger", is_flag=True, help="Recreate the Optuna studies from the run records.")
@friendly_errors
def tune(
    suite,
    methods,
    datasets,
    trials,
    folds,
    repeats,
    metric,
    sampler,
    label,
    study_seed,
    space_file,
    show_space,
    sets,
    storage,
    journal_lock,
    n_jobs,
    launcher,
    workers,
    partition,
    gpus,
    cpus,
    mem_gb,
    time_min,
    cluster,
    results,
    roots,
    device,
    keep_checkpoints,
    dry_run,
    show_status,
    final,
    seeds,
    seed_start,
    partial,
    rebuild_ledger,
):
    """Tune METHODS x DATASETS (or every cell of a SUITE) with the same budget: N planned trials
    plus the published setting, each scored by K-fold CV on train ∪ val."""
    from mmbench.benchmark.config import parse_overrides
    from mmbench.tuning import commands

    root_dir = results_root(results)
    if show_status:
        for line in commands.status_lines(root_dir, label):
            click.echo(line)
        return
    req = commands.Request(
        list(methods),
        list(datasets),
        suite,
        trials,
        folds,
        repeats,
        metric,
        sampler,
        label,
        study_seed,
        parse_overrides(sets, once=True),
        space_file,
        parse_roots(roots, list(datasets)),
    )
    if show_space or (space_file is not None and not Path(space_file).suffix == ".toml"):
        click.echo(commands.space_text(req))
        return
    workers_n = workers if launcher == "slurm" else n_jobs
    studies = commands.resolve_studies(req, root_dir)
    if dry_run:
        from mmbench.tuning.study import parse_storage

        parse_storage(storage, root_dir, workers_n, journal_lock)  # refuse a bad storage here too
        for line in commands.dry_run_lines(studies, figures=commands.bench_figures(), roots=req.roots):
            click.echo(line)
        return
    if final or rebuild_ledger:
        commands.require_existing(studies, root_dir)
    if rebuild_ledger:
        click.echo(commands.set_aside_damaged(storage, root_dir, journal_lock) or "", nl=False)
    storage_spec = commands.prepare(studies, root_dir, storage, workers_n, journal_lock)
    if rebuild_ledger:
        for line in commands.rebuild(studies, storage_spec, root_dir):
            click.echo(line)
        return
    if final:
        code = commands.final(
            studies, storage_spec, root_dir, seeds, seed_start, partial, n_jobs, device, req.roots, click.echo
        )
        sys.exit(code)
    slurm = None
    if launcher == "slurm":
        from mmbench.benchmark.slurm import SlurmOptions

        slurm = SlurmOptions(
            partition, gpus, cpus, mem_gb, time_min, workers, None if cluster == "auto" else cluster
        )
    code = commands.run_studies(
        studies,
        storage_spec,
        root_dir,
        n_jobs,
        launcher,
        workers,
        device,
        req.roots,
        keep_checkpoints,
        click.echo,
        slurm,
    )
    if code:
        sys.exit(EXIT_FAILED_RUNS)
