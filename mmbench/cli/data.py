"""``mmbench data prepare|fixture|check|cache``: dataset tools (``mmbench.datasets``).

``check`` works for any registered dataset through ``spec.check(root, cfg)``: it prints every
problem (``error:`` / ``warn:`` with its path) and exits 1 on errors. It decodes every file
(the data config carries ``check_deep = True``; ``media_check`` remembers verified files),
``--quick`` a sample of 20 clips per split. Count and fingerprint warnings fold into one line;
``--strict`` lists each of them as an error. On a tree written by ``data fixture`` (marker file
``mmbench-fixture.json``) the check uses the preset the fixture fits unless ``--preset`` is given;
``--skip-missing`` sets ``data.drop_missing=true``, so samples with missing media are reported
as dropped instead of blocking.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import click

from mmbench.cli.options import dataset_root, friendly_errors, jobs_option, root_option, sets_option
from mmbench.datasets.out_dir import FIXTURE_MARKERS, PREPARE_MARKERS, check_out_dir
from mmbench.results.errors import MMBenchError
from mmbench.results.registry import BASELINE_METHOD

EXIT_PROBLEMS = 1


def _data_config(dataset: str, preset: str | None, sets) -> object:
    """The resolved ``DataConfig`` of a dataset (the shared config, preset and ``--set data.*``)."""
    from mmbench.benchmark.config import parse_overrides, resolve_config

    overrides = parse_overrides(sets, once=True)
    bad = [k for k in overrides if not k.startswith("data.")]
    if bad:
        raise MMBenchError(f"only data.* keys can be set here, got {', '.join(bad)}")
    if preset:
        overrides["data.preset"] = preset
    return resolve_config(dataset, BASELINE_METHOD, overrides).data


def _root(spec, dataset: str, root: str | None) -> Path | None:
    resolved = spec.resolve_root(dataset_root(root, dataset))
    if resolved is not None and not resolved.exists():
        raise MMBenchError(f"data root {resolved} does not exist: pass --root DIR (or set MMBENCH_DATA)")
    return resolved


_set_option = sets_option("Data option override.", metavar="data.KEY=VALUE")
_preset_option = click.option("--preset", default=None, help="Data preset (default: the dataset's paper preset).")


@click.group()
def data():
    """Dataset tools: prepare a download, write a fixture, check a data root, build the decoded cache."""


@data.command()
@click.argument("dataset")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Directory to write.")
@click.option("--layout", default=None, help="On-disk layout (default: the dataset's first).")
@click.option("--n-per-class", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Write into an --out that holds other files (nothing is deleted).")
@friendly_errors
def fixture(dataset, out, layout, n_per_class, seed, force):
    """Write a tiny DATASET tree in its real on-disk format to --out."""
    from mmbench.benchmark.registry import get_dataset
    from mmbench.datasets.fixtures import write_fixture
    from mmbench.datasets.raw_fixtures import mark_fixture

    spec = get_dataset(dataset)
    check_out_dir(out, dataset, FIXTURE_MARKERS, "fixture", force)
    try:
        root = write_fixture(dataset, out, layout, n_per_class, seed)
    except NotImplementedError as exc:
        raise MMBenchError(str(exc)) from None
    except ValueError as exc:
        layouts = ", ".join(spec.layouts()) or "default"
        raise MMBenchError(f"{exc} (layouts of {dataset}: {layouts})") from None
    preset = mark_fixture(root, dataset, spec)
    click.echo(f"wrote a {dataset} fixture to {root} (it fits data.preset={preset}; `mmbench data check` follows it)")


@data.command()
@click.argument("dataset")
@click.option("--from", "raw", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The downloaded release (e.g. CREMA-D's folder with VideoFlash/ and AudioWAV/).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Data root to write (the tree the loader reads).")
@jobs_option("Decoding processes.")
@click.option("--split", "split_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="cremad: split lists to use (e.g. OGM-GE's train.csv and test.csv), repeatable.")
@click.option("--split-seed", type=int, default=0, show_default=True,
              help="cremad without --split: seed of the stratified 90/10 split.")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="kinetics_sounds, vggsound: the class/split csv (default: the one csv in --from).")
@click.option("--flow", type=click.Choice(["farneback", "tvl1"]), default="farneback", show_default=True,
              help="nvgesture: optical-flow algorithm (tvl1 needs opencv-contrib-python-headless).")
@click.option("--flow-size", type=click.IntRange(min=8), default=256, show_default=True,
              help="nvgesture: flow arrays are SIZE x SIZE (data.nvgesture.size).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--force", is_flag=True, help="Write into an --out that holds other files (nothing else is deleted).")
@click.option("--keep-partial", is_flag=True, help="Keep videos that decode to less than their stated duration.")
@friendly_errors
def prepare(dataset, raw, out, jobs, split_files, split_seed, csv_file, flow, flow_size, no_progress, force,
            keep_partial):
    """Write the tree DATASET's loader reads from the downloaded files: frames, wavs, flow, lists.

    Finished clips are skipped on a rerun; an unreadable video is named, skipped and listed at the
    end; the exit code is non-zero only when nothing usable remains."""
    from mmbench.benchmark.registry import require_names
    from mmbench.datasets.prepare import prepare as run_prepare

    require_names(dataset=dataset)
    check_out_dir(out, dataset, PREPARE_MARKERS, "prepare", force)
    outcome, record = run_prepare(dataset, raw, out, jobs, not no_progress, keep_partial, split_files=split_files,
                                  split_seed=split_seed, csv_file=csv_file, flow=flow, size=flow_size)
    click.echo(f"{dataset}: {len(outcome.done)} usable ({outcome.resumed} already done), "
               f"{len(outcome.failed)} skipped -> {out} (record: {record})")
    for cid, why in sorted(outcome.failed.items()):
        click.echo(f"  skipped {cid}: {why}")
    click.echo(f"next: mmbench data check {dataset} --root {out}")


@data.command()
@click.argument("dataset")
@root_option
@_preset_option
@_set_option
@click.option("--strict", is_flag=True, help="Count and fingerprint mismatches are errors, each listed.")
@click.option("--quick", is_flag=True, help="Decode a sample of 20 clips per split instead of every file.")
@click.option("--deep", is_flag=True, help="Decode every file again, also those verified before (same size and mtime).")
@click.option("--skip-missing", is_flag=True, help="Report samples with missing media as dropped, not as errors.")
@friendly_errors
def check(dataset, root, preset, sets, strict, quick, deep, skip_missing):
    """List every problem of a DATASET root; exit 1 on errors.

    Every wav, image and array is opened and decoded, in parallel; files verified before (same
    size and mtime) are skipped, so a second check of an unchanged tree is instant."""
    from mmbench.benchmark.registry import get_dataset
    from mmbench.datasets import media_check
    from mmbench.datasets._checks import collapse_counts
    from mmbench.datasets.raw_fixtures import fixture_preset

    spec = get_dataset(dataset)
    resolved = _root(spec, dataset, root)
    if preset is None and resolved is not None:
        preset = fixture_preset(resolved, dataset)
        if preset:
            click.echo(f"{resolved} is an mmbench fixture: checked with data.preset={preset} (--preset overrides)")
    cfg = _data_config(dataset, preset, sets)
    if skip_missing:
        cfg = replace(cfg, drop_missing=True)
    cfg.check_deep = deep or not quick
    media_check.trust_memo(not deep)  # --deep: the memo of verified files serves the default path only
    problems = spec.check(resolved, cfg)
    if not strict:
        problems = collapse_counts(problems, dataset)
    n_err = n_warn = 0
    for p in problems:
        level = "error" if (p.level == "error" or (strict and getattr(p, "kind", "") == "count")) else "warn"
        n_err += level == "error"
        n_warn += level != "error"
        click.echo(f"{level}: {p.message}")
    where = resolved if resolved is not None else "(embedded)"
    if n_err:
        click.echo(f"{dataset} at {where}: {n_err} errors, {n_warn} warnings", err=True)
        sys.exit(EXIT_PROBLEMS)
    click.echo(f"{dataset} at {where}: ok ({n_warn} warnings)")


@data.command()
@click.argument("dataset")
@root_option
@_preset_option
@_set_option
@jobs_option("Decoding processes (0: in this process).", default=0, min_jobs=0)
@click.option("--workers", type=click.IntRange(min=0), default=None, hidden=True,
              help="Deprecated name of --jobs (kept for old scripts).")
@click.option("--rebuild", is_flag=True, help="Rebuild even when the cache is up to date.")
@click.option("--force", is_flag=True, help="Replace a folder at the cache's path that is not an mmbench cache.")
@friendly_errors
def cache(dataset, root, preset, sets, jobs, workers, rebuild, force):
    """Decode DATASET once into the packed cache that the loader then uses automatically."""
    from mmbench.benchmark.registry import get_dataset
    from mmbench.benchmark.trainer import check_data
    from mmbench.datasets.cache import build_cache

    spec = get_dataset(dataset)
    if not hasattr(spec, "scan_missing"):
        raise MMBenchError(f"{dataset} has no decoded cache (only the audio-visual datasets do)")
    cfg = _data_config(dataset, preset, sets)
    cfg = replace(cfg, options={**cfg.options, "cache": {**cfg.options.get("cache", {}), "mode": "off"}})
    resolved, warnings = check_data(spec, dataset_root(root, dataset), cfg)
    for w in warnings:
        click.echo(f"warn: {w}")
    build_cache(spec, resolved, cfg, workers=jobs if workers is None else workers, echo=click.echo, force=rebuild,
                replace_foreign=force)
