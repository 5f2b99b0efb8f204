"""What ``mmbench tune`` does, behind its thin click layer (``mmbench/cli_tune.py``): resolve the
studies of a command (methods x datasets, or a suite), check every input before anything is
written, then run, show (``--dry-run``, ``--status``, ``--space``), rebuild, or run the finals."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmbench.results.errors import ConfigError
from mmbench.tuning import space as space_mod
from mmbench.tuning.study import (
    METRICS,
    TRIAL_SEED_START,
    Study,
    build_study,
    check_frozen,
    default_label,
    parse_storage,
    require_optuna,
    write_study_json,
)

PROTOCOL_OFFICIAL = (
    "tuning needs a validation split; protocol=official has none and is the paper's own "
    "setting: use protocol=shared"
)


@dataclass
class Request:
    methods: list = field(default_factory=list)
    datasets: list = field(default_factory=list)
    suite: str | None = None
    trials: int = 20
    folds: int = 3
    repeats: int = 1
    metric: str = "acc"
    sampler: str = "random"
    label: str | None = None
    study_seed: int = 0
    fixed: dict = field(default_factory=dict)
    space_file: str | None = None
    roots: dict = field(default_factory=dict)


def cells(req: Request) -> list[tuple[str, str, dict]]:
    """(dataset, method, fixed overrides) of every study; ``unimodal`` per modality."""
    from mmbench.benchmark.registry import require_names
    from mmbench.benchmark.suites import expand_special, load_suite

    out = []
    if req.suite is not None:
        s = load_suite(req.suite, None, req.roots)
        for job in s.jobs:
            ov = {**job.overrides_dict, **req.fixed}
            cell = (job.dataset, job.method, ov)
            if cell not in out:
                out.append(cell)
        return out
    if not req.methods or not req.datasets:
        raise ConfigError("give -m METHOD and -d DATASET (repeatable), or a SUITE")
    for d in req.datasets:
        for m in req.methods:
            require_names(dataset=d, method=m)
            for ov, _ in expand_special(d, m, dict(req.fixed)):
                out.append((d, m, ov))
    return out


def resolve_studies(req: Request, results) -> list[Study]:
    """Every study of the command, validated (space, folds, protocol, frozen spec); nothing
    is written."""
    from mmbench.benchmark.config import resolve_config
    from mmbench.benchmark.folds import smallest_class
    from mmbench.benchmark.registry import get_dataset

    if req.metric not in METRICS:
        raise ConfigError(f"--metric must be one of {', '.join(METRICS)}")
    if req.fixed.get("protocol") == "official":
        raise ConfigError(PROTOCOL_OFFICIAL)
    for key in ("data.cv_folds", "train.eval_test", "train.keep_checkpoints"):
        if key in req.fixed:
            raise ConfigError(
                f"--set {key} is the tuner's own setting for trial runs; use --folds / --keep-checkpoints"
            )
    the_cells = cells(req)
    label = req.label or default_label(
        {
            "sampler": req.sampler,
            "study_seed": req.study_seed,
            "folds": req.folds,
            "repeats": req.repeats,
            "metric": req.metric,
            "fixed": dict(sorted(req.fixed.items())),
            "suite": req.suite,
            "cells": sorted({(d, m) for d, m, _ in the_cells}),
            "space_file": _file_text(req.space_file),
        }
    )
    if not label.replace("_", "").replace(".", "").isalnum():
        raise ConfigError(f"--study {label!r}: use letters, digits, '_' and '.' only")
    studies, checked = [], {}
    for dataset, method, fixed in the_cells:
        cfg = resolve_config(dataset, method, fixed)
        if cfg.protocol == "official":
            raise ConfigError(PROTOCOL_OFFICIAL)
        if dataset not in checked:
            spec = get_dataset(dataset)
            root = spec.resolve_root(req.roots.get(dataset))
            c, n = smallest_class(spec, root, cfg.data)
            checked[dataset] = (c, n)
        c, n = checked[dataset]
        if req.folds > n:
            raise ConfigError(f"{dataset} has {n} items of class {c} in train∪val: at most --folds {n}")
        dims = space_mod.load_space(dataset, method, req.space_file)
        base = space_mod.validate(dims, dataset, method, fixed)
        st = build_study(
            label,
            dataset,
            method,
            fixed,
            dims,
            base,
            req.sampler,
            req.study_seed,
            req.folds,
            req.repeats,
            req.metric,
            req.trials,
        )
        st.space_origin = {d.key: f"{d.source} ({d.origin})" for d in dims}
        studies.append(st)
    return studies


def _file_text(path):
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"--space {path}: cannot read it ({exc})") from None


def prepare(studies: list[Study], results, storage_value, workers: int, journal_lock: str):
    """Check the frozen specs and open the storage (before any training or write), then write
    each ``study.json``. Returns the storage spec."""
    optuna = require_optuna()
    olds = [check_frozen(st, results) for st in studies]
    storage_spec = parse_storage(storage_value, results, workers, journal_lock)
    if storage_spec.kind == "journal":
        from pathlib import Path

        Path(storage_spec.url).parent.mkdir(parents=True, exist_ok=True)
    storage_spec.open()
    for st, old in zip(studies, olds, strict=True):
        write_study_json(st, results, storage_spec.display, optuna.__version__, old)
    return storage_spec


def _estimate_s(st: Study, figures, roots: dict) -> tuple[float | None, str]:
    """Seconds of one fold run from ``mmbench bench`` figures (``benchmark/estimate.py``), or
    (None, why)."""
    from mmbench.benchmark.config import resolve_config
    from mmbench.benchmark.folds import pool_labels
    from mmbench.benchmark.registry import get_dataset
    from mmbench.speed.estimate import lookup_step, run_hours

    cfg = resolve_config(st.dataset, st.method, st.fixed)
    step, why = lookup_step(figures, st.dataset, st.method, cfg.train.batch_size)
    if step is None:
        return None, why
    spec = get_dataset(st.dataset)
    _, labels = pool_labels(spec, spec.resolve_root(roots.get(st.dataset)), cfg.data)
    n_train = len(labels) * (st.folds - 1) // st.folds
    return run_hours(step, n_train, cfg.train.batch_size, st.epochs) * 3600, why


def dry_run_lines(studies: list[Study], rows: int = 4, figures=(), roots=None) -> list[str]:
    lines = []
    total_runs = 0
    total_s = 0.0
    unknown = False
    for st in studies:
        runs = st.n_planned() * st.n_folds()
        total_runs += runs
        est, why = _estimate_s(st, list(figures), roots or {})
        if est is None:
            unknown = why
        else:
            total_s += est * runs
        lines.append(
            f"{st.name}: {st.n_planned()} trials (anchor + {st.trials}) x {st.folds} folds x "
            f"{st.repeats} repeats = {runs} runs of {st.epochs} epochs, seeds "
            f"{TRIAL_SEED_START}..{TRIAL_SEED_START + st.n_folds() - 1}, sampler {st.sampler}"
        )
        for d in st.dims:
            lines.append(f"  {d.key} {d.describe()}  default {st.anchor[d.key]!r}  {d.source}")
        for i, row in enumerate(st.plan[:rows]):
            shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
            lines.append(f"  trial {i}{' (anchor)' if i == 0 else ''}: {shown}")
    hours = f"hours unknown ({unknown})" if unknown else f"about {total_s / 3600:.2f} training hours"
    lines.append(f"total: {len(studies)} studies, {total_runs} runs, {hours}; nothing written (--dry-run)")
    return lines


def bench_figures():
    from pathlib import Path

    from mmbench.speed.estimate import read_bench_figures

    for path in (Path("BENCHMARKS.md"), Path(__file__).resolve().parents[2] / "BENCHMARKS.md"):
        if path.is_file():
            return read_bench_figures(path)
    return []


def space_text(req: Request) -> str:
    """``mmbench tune --show-space -m M -d D``: the resolved space as TOML with sources."""
    parts = []
    for dataset, method, fixed in cells(req):
        dims = space_mod.load_space(
            dataset, method, req.space_file if str(req.space_file).endswith(".toml") else None
        )
        base = space_mod.validate(dims, dataset, method, fixed)
        parts.append(
            f"# {method} on {dataset}"
            + (f" ({fixed})" if fixed else "")
            + "\n"
            + space_mod.space_toml(dims, base)
        )
    return "\n\n".join(parts)


def _open(studies, storage_spec):
    from mmbench.tuning.study import open_optuna_study

    optuna = require_optuna()
    storage = storage_spec.open()
    return optuna, storage, [open_optuna_study(st, storage, optuna, storage_spec.display) for st in studies]


def resume_lines(studies, storage_spec, results) -> list[str]:
    from mmbench.tuning.runner import study_state

    optuna, _, opened = _open(studies, storage_spec)
    out = []
    for st, study in zip(studies, opened, strict=True):
        s = study_state(st, study, results, optuna)
        done = len(s.complete) + len(s.failed)
        if done or s.running:
            orphans = [n for n, free in s.running if free]
            out.append(
                f"resuming {st.name}: {done} finished, {len(orphans)} orphaned"
                + (f" (trial {', '.join(map(str, orphans))})" if orphans else "")
                + f", {s.not_started} not started"
            )
    return out


def run_studies(
    studies,
    storage_spec,
    results,
    n_jobs,
    launcher,
    workers,
    device,
    roots,
    keep_checkpoints,
    echo,
    slurm=None,
) -> int:
    """Train every study's trials; 1 when a trial crashed (it is left for resume), else 0."""
    import time

    from mmbench.tuning.runner import work_pool

    t0 = time.time()
    for line in resume_lines(studies, storage_spec, results):
        echo(line)
    runs = sum(st.n_planned() * st.n_folds() for st in studies)
    echo(
        f"tuning {len(studies)} studies ({runs} fold runs) -> {results} with "
        + (
            f"{workers} SLURM workers"
            if launcher == "slurm"
            else "this process"
            if n_jobs == 1
            else f"{n_jobs} workers"
        )
    )
    if launcher == "slurm":
        from mmbench.tuning.slurm import submit_workers

        return submit_workers(
            studies, storage_spec, results, workers, device, roots, keep_checkpoints, echo, slurm
        )
    device = "cpu" if device == "auto" and not _cuda() else device
    report = work_pool(studies, storage_spec, results, n_jobs, roots, device, echo, keep_checkpoints)
    for line in status_lines(
        results, studies[0].label, only={st.name for st in studies}, storage_spec=storage_spec
    ):
        echo(line)
    echo(
        f"{report.told} trials told ({report.failed} failed by divergence) in {time.time() - t0:.0f}s"
        + (f"; {report.busy} trials being trained by another worker" if report.busy else "")
    )
    for line in report.crashed:
        echo(f"crashed: {line}")
    return 1 if report.crashed else 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def status_lines(results, label=None, only=None, storage_spec=None) -> list[str]:
    """``--status``: one line per study found under ``results/_tune`` (every label, or ``label``)."""
    from mmbench.tuning.runner import status_line, study_state
    from mmbench.tuning.study import list_studies, study_from_json

    docs = [d for d in list_studies(results) if label is None or d["label"] == label]
    if only is not None:
        docs = [d for d in docs if d["study"] in only]
    if not docs:
        return [f"no tuning studies under {results}/_tune" + (f" with label {label}" if label else "")]
    optuna = require_optuna()
    out = []
    storages = {}
    for doc in docs:
        st = study_from_json(doc)
        key = doc["storage"]
        if key not in storages:
            spec = storage_spec
            if spec is None:
                from mmbench.tuning.study import Storage

                if "***" in key:
                    out.append(f"{st.name}: its storage {key} needs the password: pass --storage")
                    continue
                spec = Storage(key, key, "rdb" if "://" in key else "journal")
            storages[key] = spec.open()
        try:
            study = optuna.load_study(study_name=st.name, storage=storages[key])
        except KeyError:
            out.append(f"{st.name}: no trials in the ledger yet")
            continue
        out.append(status_line(st, study_state(st, study, results, optuna)))
    return out


def rebuild(studies, storage_spec, results) -> list[str]:
    from mmbench.tuning.runner import rebuild_ledger

    optuna = require_optuna()
    storage = storage_spec.open()
    return [
        f"{st.name}: rebuilt {rebuild_ledger(st, storage, results, optuna)} trials from the run records"
        for st in studies
    ]


def final(studies, storage_spec, results, seeds, seed_start, partial, n_jobs, device, roots, echo) -> int:
    """``--final``: check every study is ready (nothing runs otherwise), then run each best
    configuration with seeds ``seed_start..+seeds-1`` under ``tuned-<label>``."""
    from mmbench.benchmark.launch import run_local
    from mmbench.tuning import final as final_mod
    from mmbench.tuning.runner import study_state
    from mmbench.tuning.study import final_tag

    optuna, _, opened = _open(studies, storage_spec)
    plans = []
    for st, study in zip(studies, opened, strict=True):
        state = study_state(st, study, results, optuna)
        final_mod.check_ready(st, state, partial)
        best = final_mod.best_trial(st, state)
        plans.append((st, state, best))
    code = 0
    for st, state, best in plans:
        overrides = final_mod.final_overrides(st, best)
        block = final_mod.tuning_block(st, state, best, partial)
        echo(f"{st.name}: best trial {best[0]} (val {st.metric} {100 * best[1]:.2f}); the same as:")
        echo("  " + final_mod.run_line(st, overrides, seeds, seed_start))
        outcomes = run_local(
            st.dataset,
            st.method,
            range(seed_start, seed_start + seeds),
            overrides,
            results,
            root=roots.get(st.dataset),
            device=device,
            tag=final_tag(st.base, st.method, st.label),
            progress=False,
            echo=echo,
            n_jobs=n_jobs,
        )
        final_mod.stamp(outcomes, block)
        if any(o.status == "failed" for o in outcomes):
            code = 1
    return code


def require_existing(studies, results) -> None:
    """``--final`` / ``--rebuild-ledger`` need the study to exist (nothing is created)."""
    from mmbench.tuning.study import read_study_json

    for st in studies:
        if read_study_json(st, results) is None:
            raise ConfigError(
                f"no study {st.name} under {results}/_tune: run `mmbench tune` with this --study first"
            )


def set_aside_damaged(storage_value, results, journal_lock) -> str | None:
    """``--rebuild-ledger`` on a journal that cannot be replayed: rename it to
    ``<name>.damaged-<UTC time>`` (kept, never deleted) so the rebuild starts a fresh one."""
    import time
    from pathlib import Path

    from mmbench.tuning.study import parse_storage

    spec = parse_storage(storage_value, results, 1, journal_lock)
    if spec.kind != "journal" or not Path(spec.url).is_file():
        return None
    try:
        storage = spec.open()
        for summary in storage.get_all_studies():
            storage.get_all_trials(summary._study_id, deepcopy=False)
        return None
    except (ConfigError, ValueError, KeyError):
        aside = Path(f"{spec.url}.damaged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        Path(spec.url).rename(aside)
        return f"the damaged ledger was moved to {aside}\n"
