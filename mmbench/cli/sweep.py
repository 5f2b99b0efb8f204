"""``mmbench sweep`` (any suite, here or on SLURM) and ``mmbench reproduce`` (a paper suite, then
its tables and figures). The runs: ``mmbench.benchmark.launch`` and ``.slurm``; the paper's
artefacts: ``mmbench.paper.artefacts``; the GPU-hours estimate: ``mmbench.speed.estimate``."""

from __future__ import annotations

import functools
import sys
from dataclasses import replace
from pathlib import Path

import click

from mmbench.cli.options import (
    EXIT_FAILED_RUNS,
    device_option,
    dry_run_option,
    echo_plan,
    friendly_errors,
    jobs_option,
    logger_option,
    parse_roots,
    results_option,
    results_root,
    roots_option,
    select_option,
    sets_option,
)
from mmbench.results.errors import ConfigError, MMBenchError

_SLURM = {  # option -> (SlurmOptions field, click keywords)
    "--partition": ("partition", {"default": None, "help": "SLURM partition."}),
    "--gpus": ("gpus", {"type": int, "default": 1, "show_default": True, "help": "SLURM GPUs per task."}),
    "--cpus": ("cpus", {"type": int, "default": 8, "show_default": True, "help": "SLURM CPUs per task."}),
    "--mem": ("mem_gb", {"type": int, "default": 32, "show_default": True, "help": "SLURM memory per task (GB)."}),
    "--time": ("time_min", {"type": int, "default": 24 * 60, "show_default": True,
                            "help": "SLURM time limit (minutes)."}),
    "--array-parallelism": ("array_parallelism", {"type": int, "default": 64, "show_default": True}),
    "--cluster": ("cluster", {"type": click.Choice(["auto", "slurm", "local", "debug"]), "default": "auto",
                              "show_default": True, "help": "submitit executor; 'local' runs the SLURM path on this machine."}),
}


def slurm_options(fn):
    """The SLURM resources, gathered into one ``SlurmOptions`` argument ``slurm``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from mmbench.benchmark.slurm import SlurmOptions

        fields = {field: kwargs.pop(field) for field, _ in _SLURM.values()}
        fields["cluster"] = None if fields["cluster"] == "auto" else fields["cluster"]
        return fn(*args, slurm=SlurmOptions(**fields), **kwargs)

    for option, (field, kw) in reversed(_SLURM.items()):
        wrapper = click.option(option, field, **kw)(wrapper)
    return wrapper


def _suite_jobs(suite, seeds, roots, sets, loggers=()):
    """The suite's jobs with ``--root``, ``--set`` and ``--logger`` applied, and the root map."""
    from mmbench.benchmark.config import parse_overrides
    from mmbench.benchmark.suites import load_suite

    s = load_suite(suite, seeds)
    root_map = parse_roots(roots, sorted({j.dataset for j in s.jobs}))
    extra = parse_overrides(sets, once=True)
    if loggers:
        extra["train.loggers"] = list(loggers)
    jobs = [replace(j.with_overrides(extra), root=root_map.get(j.dataset, j.root)) for j in s.jobs]
    return s.name, jobs, root_map, extra


@click.command()
@click.argument("suite")
@click.option("--launcher", type=click.Choice(["local", "slurm"]), default="local", show_default=True)
@jobs_option("Local worker processes (each pinned to one GPU, or a share of the CPU cores).")
@results_option
@sets_option("Override for every run, repeatable.")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Replace the suite's seed count.")
@roots_option()
@device_option()
@dry_run_option()
@click.option("--rerun", is_flag=True, help="Train runs that already have a record (finished, failed, other config) again.")
@slurm_options
@click.option("--log-dir", type=click.Path(path_type=Path), default=None, help="submitit logs (default RESULTS/_slurm).")
@click.option("--wait/--no-wait", default=False, help="SLURM: wait for the array and summarise.")
@click.option("--probe", "probe_runs", is_flag=True, help="Probe each finished run (mmbench probe) once the runs end.")
@logger_option
@friendly_errors
def sweep(suite, launcher, jobs, results, sets, seeds, roots, device, dry_run, rerun, slurm, log_dir, wait, probe_runs,
          loggers):
    """Run a SUITE (name or .toml path): finished runs are skipped, partial runs resumed."""
    from mmbench.benchmark.launch import failed_earlier, summarise_outcomes, sweep_local

    if probe_runs and launcher == "slurm" and not wait:
        raise MMBenchError("--probe with --launcher slurm needs --wait; or run `mmbench probe` once the array ends")
    name, runs, root_map, _ = _suite_jobs(suite, seeds, roots, sets, loggers)
    root_dir = results_root(results)
    click.echo(f"suite {name}: {len(runs)} runs -> {root_dir}")
    if dry_run:
        if echo_plan(runs, root_dir)[1]:
            sys.exit(EXIT_FAILED_RUNS)
        return
    if launcher == "local":
        outcomes = sweep_local(runs, root_dir, jobs, device, echo=click.echo, rerun=rerun)
    else:
        from mmbench.benchmark.slurm import sweep_slurm

        outcomes = sweep_slurm(runs, root_dir, slurm, device, rerun, log_dir, wait, echo=click.echo)
        if outcomes is None:  # submitted, not waited for
            return
    click.echo(summarise_outcomes(outcomes))
    if probe_runs:
        from mmbench.probe.run import probe_outcomes

        probe_outcomes(outcomes, root_map, echo=click.echo)
    # failed seeds left behind make the command fail, also when it had nothing to train
    if any(o.status == "failed" or failed_earlier(o) for o in outcomes):
        sys.exit(EXIT_FAILED_RUNS)


@click.command()
@click.argument("suite")
@roots_option()
@results_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the tables and figures go (default RESULTS/paper/SUITE).")
@jobs_option("Local worker processes (each pinned to one GPU, or a share of the CPU cores).")
@sets_option("Override for every run, repeatable.")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Replace the suite's seed count.")
@device_option()
@select_option
@dry_run_option("List what would be trained and the estimated GPU-hours.")
@click.option("--bench", "bench_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="`mmbench bench --append` output to estimate from (default RESULTS/bench.md).")
@friendly_errors
def reproduce(suite, roots, results, out, jobs, sets, seeds, device, select, dry_run, bench_path):
    """Run a paper SUITE (finished runs skipped), then write its paper-shaped tables (md, tex,
    html) and, for figure suites, its figures (PDF, PNG)."""
    from mmbench.paper.suites import suite_paper

    paper = suite_paper(suite)
    if not paper:
        raise ConfigError(f"suite {suite!r} has no [paper] section: `mmbench reproduce` takes a paper_* suite "
                          "(`mmbench sweep` runs any suite)")
    name, runs, root_map, extra = _suite_jobs(suite, seeds, roots, sets)
    root_dir = results_root(results)
    click.echo(f"suite {name}: {len(runs)} runs -> {root_dir}")
    if dry_run:
        from mmbench.speed.estimate import estimate_text

        pending, blocked = echo_plan(runs, root_dir)
        click.echo(estimate_text(pending, root_dir, bench_path or root_dir / "bench.md"))
        if blocked:
            sys.exit(EXIT_FAILED_RUNS)
        return
    from mmbench.benchmark.launch import job_config, summarise_outcomes, sweep_local
    from mmbench.paper.artefacts import write_artefacts
    from mmbench.results.store import load_results

    outcomes = sweep_local(runs, root_dir, jobs, device, echo=click.echo)  # --jobs 1: in this process
    click.echo(summarise_outcomes(outcomes))
    names = {(j.dataset, job_config(j, root_dir)[0].run_name) for j in runs}
    records = [r for r in load_results(root_dir, sorted({d for d, _ in names})) if (r["dataset"], r["run"]) in names]
    write_artefacts(paper, records, out or root_dir / "paper" / name, select, extra, root_map, echo=click.echo)
    if any(o.status == "failed" for o in outcomes):
        sys.exit(EXIT_FAILED_RUNS)
