"""The ``mmbench`` command line (click): run, table, report, list.

Every ``MMBenchError`` ends as one line on stderr (``error: ...``) and a non-zero exit; no
tracebacks for bad input.
"""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import click

from mmbench.cli_common import (
    EXIT_FAILED_RUNS,
    EXIT_INTERRUPTED,
    echo_problems,
    friendly_errors,
    parse_roots,
    results_option,
    results_root,
    scan_records,
    table_options,
)
from mmbench.cli_config import config_cmd
from mmbench.cli_data import data
from mmbench.cli_paper import figure, reproduce
from mmbench.cli_probe import probe
from mmbench.cli_tune import tune
from mmbench.errors import MMBenchError
from mmbench.reporting.cli_report import report


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
@results_option
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Config override, repeatable (e.g. epochs=5).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--tag", default=None, help="Run tag (default: named after the non-default overrides).")
@click.option("--rerun", is_flag=True, help="Train finished or failed seeds again.")
@click.option("--jobs", "n_jobs", type=click.IntRange(min=1), default=None,
              help="Seeds trained at once, each in its own process (default: one per GPU, else one per CPU core).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the encoders (same as --set compile=true).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@friendly_errors
def run(method, dataset, seeds, seed_start, root, results, sets, device, tag, rerun, n_jobs, compile_, no_progress):
    """Train METHOD on DATASET for each seed; finished seeds are skipped, partial ones resume."""
    from mmbench.benchmark.config import parse_overrides, resolve_config

    overrides = parse_overrides(sets)
    if compile_:
        overrides["compile"] = True
    resolve_config(dataset, method, overrides, seed=seed_start, tag=tag, device=device)  # validate first
    # imported after validation: a typo answers before torch loads
    from mmbench.benchmark.launch import OUTCOMES, failed_earlier, run_local
    outcomes = run_local(
        dataset,
        method,
        range(seed_start, seed_start + seeds),
        overrides,
        results_root(results),
        root=root,
        device=device,
        tag=tag,
        rerun=rerun,
        progress=not no_progress,
        echo=click.echo,
        n_jobs=n_jobs,
    )
    counts = {s: sum(o.status == s for o in outcomes) for s in OUTCOMES}
    if counts["skipped"] == len(outcomes) and outcomes:
        click.echo(f"nothing to train: all {len(outcomes)} seeds already have records (use --rerun to retrain)")
    else:
        click.echo(
            f"done: {counts['finished']} trained, {counts['skipped']} skipped, {counts['failed']} failed"
            + (f", {counts['interrupted']} interrupted" if counts["interrupted"] else "")
            + (f", {counts['busy']} being trained by another process" if counts["busy"] else "")
        )
    if counts["interrupted"]:
        sys.exit(EXIT_INTERRUPTED)
    failed_before = [o.job.seed for o in outcomes if failed_earlier(o)]
    if failed_before:
        which = (f"seeds {', '.join(map(str, failed_before))} have failed records" if len(failed_before) > 1
                 else f"seed {failed_before[0]} has a failed record")
        click.echo(f"{which}; --rerun trains them again")
    if counts["failed"] or failed_before:
        sys.exit(EXIT_FAILED_RUNS)


@cli.command()
@table_options
@click.option(
    "--metric", "metrics", multiple=True, type=click.Choice(["acc", "map", "f1"]),
    help="Metrics (default: all for table1/long, acc and f1 for table2).",
)
@click.option(
    "--layout",
    type=click.Choice(["table1", "table2", "long", "probe", "cost"]),
    default="table1",
    show_default=True,
    help="table1: fusion and every modality per dataset; table2: fusion metrics per dataset; long: one row per "
    "value; probe: linear-probe metrics beside the native ones, and imbalance scores (mmbench probe); cost: "
    "params, FLOPs, s/epoch, peak memory relative to joint.",
)
@click.option("--format", "fmt", type=click.Choice(["md", "latex", "html", "csv"]), default="md", show_default=True,
              help="csv exports the per-seed values.")
@click.option("--standalone", is_flag=True, help="LaTeX: a complete document that pdflatex compiles.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write to FILE.")
@click.option("--paper", is_flag=True,
              help="The paper's tables and metrics: its reported value and ours − reported beside each cell "
                   "(no records needed).")
@click.option("--paper-table", "paper_tables", multiple=True, type=click.Choice([f"table{i}" for i in range(1, 7)]),
              help="With --paper: which of the paper's tables (default: table1 layout -> Tables 1 and 3, table2 -> 2).")
@click.option("--tuned", "tuned_label", default=None, metavar="LABEL",
              help="Default and tuned (mmbench tune --final) rows side by side, with the study's footnote.")
@click.option("--strict-budget", is_flag=True, help="--tuned: refuse rows tuned with different budgets.")
@click.option("--include-tuning", is_flag=True, help="Also show the tuning trial runs (hidden by default).")
@friendly_errors
def table(results, datasets, methods, select, split, expected, alpha, metrics, layout, fmt, standalone, out, paper,
          paper_tables, tuned_label, strict_budget, include_tuning):
    """Mean ± std over seeds for fusion and every modality; best bold, top three shaded,
    Welch's t-test against each column's best."""
    from mmbench.reporting.aggregate import render_table

    if tuned_label:
        from mmbench.tuning.table import render as tuned_table

        scan = scan_records(results, datasets, methods)
        text = tuned_table(scan.records, results_root(results), tuned_label, datasets, strict_budget)
    elif paper or paper_tables:
        from mmbench.cli_paper import paper_table_text

        text = paper_table_text(results, datasets, methods, select, split, layout, fmt, standalone, paper_tables)
    else:
        scan = scan_records(results, datasets, methods, include_tuning)
        text = render_table(
            scan.records, fmt, metrics or None, select, layout=layout, split=split, expected=expected, alpha=alpha,
            standalone=standalone, problems=scan.problems,
        )
        if fmt == "csv":  # the csv has no notes: every problem goes to stderr
            for problem in scan.problems:
                click.echo(f"note: {problem.line()}", err=True)
        else:
            echo_problems(scan.problems, "the table's notes")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        click.echo(f"wrote {out}")
    else:
        click.echo(text)


_SPEC_LINK = re.compile(r"\s*\((?:see )?specs/[^)]*\)")
_PAPER = re.compile(r'"([^"]+)",\s*([^";]*?\b(?:19|20)\d{2})')


def _summary(cls) -> str:
    """One line for ``list methods``: the first line of the method module's docstring (the
    class's when the module has none) without its links to design notes the package does not
    ship, then the paper (``Title``, venue year) the docstring cites, or the class's ``paper``."""
    module = sys.modules.get(cls.__module__)
    for doc in (getattr(module, "__doc__", None), cls.__doc__):
        text = (doc or "").strip()
        if not text:
            continue
        first = _SPEC_LINK.sub("", text.split("\n\n")[0].replace("\n", " "))
        first = re.sub(r"^``[^`]+``:\s*", "", " ".join(first.split())).rstrip(".")
        paper = getattr(cls, "paper", None)
        if not paper:
            m = _PAPER.search(" ".join(text.split()))
            paper = f'"{m.group(1)}", {m.group(2)}' if m else ""
        return f"{first}" + (f" -- {paper}" if paper else "")
    return ""


@cli.command(name="list")
@click.argument("what", type=click.Choice(["methods", "datasets"]))
@friendly_errors
def list_(what):
    """List registered methods (with the package and version providing each) or datasets.

    Broken plugins are listed after the working entries, by name, with their error."""
    from mmbench.benchmark import registry

    if what == "methods":
        for name in registry.method_names():
            try:
                summary = _summary(registry.get_method(name))
            except Exception as exc:  # noqa: BLE001 - one odd plugin must not hide the others
                summary = f"(no description: {type(exc).__name__})"
            click.echo(f"{name:<18} {registry.method_origin(name):<24} {summary}")
    else:
        for name in registry.dataset_names():
            spec = registry.get_dataset(name)
            click.echo(f"{name:<18} {spec.num_classes:>4} classes  modalities: {', '.join(spec.modalities)}")
    broken = registry.plugin_failures("method" if what == "methods" else "dataset")
    if broken:
        click.echo(f"\nbroken plugins (not usable; the {what} above are unaffected):")
        for err in broken:
            click.echo(f"{err.name:<18} {err.package:<24} BROKEN: {err.message}")


@cli.command()
@click.argument("suite")
@click.option("--launcher", type=click.Choice(["local", "slurm"]), default="local", show_default=True)
@click.option("--jobs", "n_jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Local worker processes (each pinned to one GPU, or a share of the CPU cores).")
@results_option
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override for every run, repeatable.")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Replace the suite's seed count.")
@click.option("--root", "roots", multiple=True, metavar="DATASET=DIR", help="Data root of a dataset, repeatable.")
@click.option("--device", default="auto", show_default=True)
@click.option("--dry-run", is_flag=True, help="List the runs and their state; train nothing.")
@click.option("--rerun", is_flag=True, help="Train runs that already have a record (finished, failed, other config) again.")
@click.option("--partition", default=None, help="SLURM partition.")
@click.option("--gpus", type=int, default=1, show_default=True, help="SLURM GPUs per task.")
@click.option("--cpus", type=int, default=8, show_default=True, help="SLURM CPUs per task.")
@click.option("--mem", "mem_gb", type=int, default=32, show_default=True, help="SLURM memory per task (GB).")
@click.option("--time", "time_min", type=int, default=24 * 60, show_default=True, help="SLURM time limit (minutes).")
@click.option("--array-parallelism", type=int, default=64, show_default=True)
@click.option("--cluster", type=click.Choice(["auto", "slurm", "local", "debug"]), default="auto", show_default=True,
              help="submitit executor; 'local' runs the SLURM path on this machine.")
@click.option("--log-dir", type=click.Path(path_type=Path), default=None, help="submitit logs (default RESULTS/_slurm).")
@click.option("--wait/--no-wait", default=False, help="SLURM: wait for the array and summarise.")
@click.option("--probe", "probe_runs", is_flag=True, help="Probe each finished run (mmbench probe) once the runs end.")
@friendly_errors
def sweep(suite, launcher, n_jobs, results, sets, seeds, roots, device, dry_run, rerun, partition, gpus, cpus, mem_gb,
          time_min, array_parallelism, cluster, log_dir, wait, probe_runs):
    """Run a SUITE (name or .toml path): finished runs are skipped, partial runs resumed."""
    from mmbench.benchmark.config import parse_overrides
    from mmbench.benchmark.launch import JobOutcome, failed_earlier, plan, summarise_outcomes, sweep_local
    from mmbench.benchmark.suites import load_suite

    if probe_runs and launcher == "slurm" and not wait:
        raise MMBenchError("--probe with --launcher slurm needs --wait; or run `mmbench probe` once the array ends")
    root_map = parse_roots(roots)
    s = load_suite(suite, seeds, root_map)
    extra = parse_overrides(sets)
    jobs = [j.with_overrides(extra) for j in s.jobs]
    root_dir = results_root(results)
    click.echo(f"suite {s.name}: {len(jobs)} runs -> {root_dir}")
    if dry_run:
        todo, done = plan(jobs, root_dir, refuse=False)
        for j in todo:
            click.echo(f"  pending {j.label()}")
        for o in done:
            click.echo(f"  {'skip' if o.status == 'skipped' else o.status:<7} {o.job.label()}: {o.reason}")
        if any(o.status in ("drift", "unreadable") for o in done):
            sys.exit(EXIT_FAILED_RUNS)
        return
    if launcher == "local":
        outcomes = sweep_local(jobs, root_dir, n_jobs, device, echo=click.echo, rerun=rerun)
    else:
        from mmbench.benchmark.slurm import SlurmOptions, submit

        todo, outcomes = plan(jobs, root_dir, rerun)
        if rerun:  # cleared here, once: a requeued (preempted) task must resume, not start over
            from mmbench.benchmark.launch import job_config
            from mmbench.benchmark.trainer import clear_seed

            for job in todo:
                clear_seed(job_config(job, root_dir)[1])
        opts = SlurmOptions(partition, gpus, cpus, mem_gb, time_min, array_parallelism,
                            None if cluster == "auto" else cluster)
        submitted = submit(todo, root_dir, log_dir or root_dir / "_slurm", opts, device)
        click.echo(f"submitted {len(submitted)} tasks ({len(outcomes)} already done)"
                   + (f": job {submitted[0].job_id.split('_')[0]}" if submitted else ""))
        if not wait:
            return
        for job, sj in zip(todo, submitted):
            try:
                r = sj.result()
                outcomes.append(JobOutcome(job, r["status"], r["reason"], r["seconds"], r["path"]))
            except Exception as exc:  # noqa: BLE001 - a task that crashed outright
                outcomes.append(JobOutcome(job, "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0]}"))
    click.echo(summarise_outcomes(outcomes))
    if probe_runs:
        from mmbench.probe.run import probe_outcomes

        probe_outcomes(outcomes, root_map, echo=click.echo)
    # failed seeds left behind make the command fail, also when it had nothing to train
    if any(o.status == "failed" or failed_earlier(o) for o in outcomes):
        sys.exit(EXIT_FAILED_RUNS)


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
@click.option("--data-only", is_flag=True,
              help="Time only the data: storage to model-ready batches on the device (augmentation included), "
                   "samples/s for the decode, cached and cached-device paths; --steps caps batches per round.")
@friendly_errors
def bench(dataset, methods, root, sets, device, steps, warmup, rounds, append, note, data_only):
    """Steady-state training-step time: data wait vs compute, samples/s, ratio to joint."""
    from mmbench.benchmark.bench import benchmark, machine_description, markdown_table
    from mmbench.benchmark.config import parse_overrides

    if data_only:
        from mmbench.benchmark.data_bench import data_benchmark, data_markdown_table

        results = data_benchmark(dataset, parse_overrides(sets), root, device, rounds=rounds, max_batches=steps,
                                 warmup_batches=min(warmup, 1), echo=click.echo)
        text = data_markdown_table(results, dataset, machine_description(device), note)
    else:
        results = benchmark(dataset, methods, parse_overrides(sets), root, device, steps, warmup, rounds)
        text = markdown_table(results, dataset, machine_description(device), note)
    click.echo(text)
    if append:
        with open(append, "a") as fh:
            fh.write("\n" + text)
        click.echo(f"appended to {append}")


cli.add_command(report)
cli.add_command(data)
cli.add_command(probe)
cli.add_command(config_cmd)
cli.add_command(figure)
cli.add_command(reproduce)
cli.add_command(tune)


def _stop_like_ctrl_c(signum, frame):
    """SIGTERM (what ``timeout`` and schedulers send) stops a command as Ctrl-C does: one line,
    finished epochs checkpointed, resumable, exit code 130."""
    raise KeyboardInterrupt


def main():
    signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
    cli(prog_name="mmbench")


if __name__ == "__main__":
    main()
