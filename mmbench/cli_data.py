"""``mmbench data fixture|check|cache``: dataset tools (specs/datasets.md §9, §10).

``check`` works for any registered dataset through ``spec.check(root, cfg)``: it prints every
problem (``error:`` / ``warn:`` with its path) and exits 1 on errors. ``--strict`` turns
count and fingerprint mismatches (problems of kind ``"count"``) into errors; ``--deep`` decodes
every file instead of a sample (the data config carries ``check_deep = True``);
``--skip-missing`` sets ``data.drop_missing=true``, so samples with missing media are reported
as dropped instead of blocking.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import click

from mmbench.cli_common import friendly_errors
from mmbench.errors import MMBenchError

EXIT_PROBLEMS = 1


def _data_config(dataset: str, preset: str | None, sets) -> object:
    """The resolved ``DataConfig`` of a dataset (the shared config, preset and ``--set data.*``)."""
    from mmbench.benchmark.config import parse_overrides, resolve_config

    overrides = parse_overrides(sets)
    bad = [k for k in overrides if not k.startswith("data.")]
    if bad:
        raise MMBenchError(f"only data.* keys can be set here, got {', '.join(bad)}")
    if preset:
        overrides["data.preset"] = preset
    return resolve_config(dataset, "joint", overrides).data


def _root(spec, root: Path | None) -> Path | None:
    resolved = spec.resolve_root(root)
    if resolved is not None and not resolved.exists():
        raise MMBenchError(f"data root {resolved} does not exist: pass --root DIR (or set MMBENCH_DATA)")
    return resolved


_set_option = click.option("--set", "sets", multiple=True, metavar="data.KEY=VALUE", help="Data option override.")
_preset_option = click.option("--preset", default=None, help="Data preset (default: the dataset's paper preset).")
_root_option = click.option(
    "--root", type=click.Path(path_type=Path), default=None, help="Data root (default $MMBENCH_DATA/<dataset>)."
)


@click.group()
def data():
    """Dataset tools: write a fixture, check a data root, build the decoded cache."""


@data.command()
@click.argument("dataset")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Directory to write.")
@click.option("--layout", default=None, help="On-disk layout (default: the dataset's first).")
@click.option("--n-per-class", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@friendly_errors
def fixture(dataset, out, layout, n_per_class, seed):
    """Write a tiny DATASET tree in its real on-disk format to --out."""
    from mmbench.benchmark.registry import get_dataset
    from mmbench.datasets.fixtures import write_fixture

    spec = get_dataset(dataset)
    try:
        root = write_fixture(dataset, out, layout, n_per_class, seed)
    except NotImplementedError as exc:
        raise MMBenchError(str(exc)) from None
    except ValueError as exc:
        layouts = ", ".join(spec.layouts()) or "default"
        raise MMBenchError(f"{exc} (layouts of {dataset}: {layouts})") from None
    click.echo(f"wrote a {dataset} fixture to {root}")


@data.command()
@click.argument("dataset")
@_root_option
@_preset_option
@_set_option
@click.option("--strict", is_flag=True, help="Count and fingerprint mismatches are errors.")
@click.option("--deep", is_flag=True, help="Decode every file, not a sample of 20 per split.")
@click.option("--skip-missing", is_flag=True, help="Report samples with missing media as dropped, not as errors.")
@friendly_errors
def check(dataset, root, preset, sets, strict, deep, skip_missing):
    """List every problem of a DATASET root; exit 1 on errors."""
    from mmbench.benchmark.registry import get_dataset

    spec = get_dataset(dataset)
    cfg = _data_config(dataset, preset, sets)
    if skip_missing:
        cfg = replace(cfg, drop_missing=True)
    cfg.check_deep = deep
    resolved = _root(spec, root)
    problems = spec.check(resolved, cfg)
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
@_root_option
@_preset_option
@_set_option
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True, help="Decoding processes.")
@click.option("--rebuild", is_flag=True, help="Rebuild even when the cache is up to date.")
@friendly_errors
def cache(dataset, root, preset, sets, workers, rebuild):
    """Decode DATASET once into the packed cache that the loader then uses automatically."""
    from mmbench.benchmark.registry import get_dataset
    from mmbench.benchmark.trainer import check_data
    from mmbench.datasets.cache import build_cache

    spec = get_dataset(dataset)
    if not hasattr(spec, "scan_missing"):
        raise MMBenchError(f"{dataset} has no decoded cache (only the audio-visual datasets do)")
    cfg = _data_config(dataset, preset, sets)
    cfg = replace(cfg, options={**cfg.options, "cache": {**cfg.options.get("cache", {}), "mode": "off"}})
    resolved, warnings = check_data(spec, root, cfg)
    for w in warnings:
        click.echo(f"warn: {w}")
    build_cache(spec, resolved, cfg, workers=workers, echo=click.echo, force=rebuild)
