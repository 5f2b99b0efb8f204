"""Storage-to-device throughput of the training data: ``mmbench bench --data-only``.

For each data path of a dataset, the train split and its loader are built as ``train_run``
builds them (``build_run``: same preset, ``loader_workers`` rule, pinning, ``EpochLoader``,
``train.threads``), and
one epoch (at most ``max_batches`` batches) is timed from the first request to the last batch
being model-ready on the device: decoded or read, augmented (in the loader, or on the device
with ``data.cache.augment=device``), copied, and the device synchronised. The result is samples/s,
the median over ``rounds`` epochs (epochs 0, 1, ... so that shuffles and draws differ). No model
is built.

Paths: ``decode`` (``data.cache.mode=off``: wav and jpg decoded every epoch), ``cached``
(the decoded cache, per-frame augmentation in the loader) and ``cached-device`` (the decoded
cache, batched augmentation on the device). A cached path without a cache is reported as
skipped with the command that builds it.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.loaders import EpochLoader, to_device
from mmbench.benchmark.registry import get_dataset
from mmbench.benchmark.seeding import seed_everything, torch_threads
from mmbench.benchmark.trainer import check_data, loader_workers, resolve_device
from mmbench.results.errors import DataError
from mmbench.results.registry import BASELINE_METHOD

PATHS = {
    "decode": {"data.cache.mode": "off", "data.cache.augment": "loader"},
    "cached": {"data.cache.mode": "require", "data.cache.augment": "loader"},
    "cached-device": {"data.cache.mode": "require", "data.cache.augment": "device"},
}


@dataclass
class DataBenchResult:
    path: str
    workers: int
    device: str
    batch_size: int
    batches: int  # timed batches per round
    samples_per_s: list[float]  # one per round
    skipped: str = ""  # why the path was not measured
    threads: int = 0  # torch threads of the main process (train.threads, as in a run)

    @property
    def median(self) -> float:
        return statistics.median(self.samples_per_s) if self.samples_per_s else float("nan")


def _loader(dataset: str, overrides: dict, root, device: str):
    """The train loader exactly as ``build_run`` makes it, and its run config."""
    cfg = resolve_config(dataset, BASELINE_METHOD, overrides, seed=0, device=device)
    spec = get_dataset(dataset)
    dev = resolve_device(cfg.device)
    data_root, _ = check_data(spec, root, cfg.data)
    seed_everything(cfg.seed)
    train_set = spec.build("train", data_root, True, cfg.data)
    persistent = cfg.data.persistent_workers
    workers = loader_workers(cfg.data.num_workers, train_set, dev)
    loader = EpochLoader(
        train_set, cfg.train.batch_size, True, cfg.seed, cfg.train.drop_last,
        num_workers=workers,
        pin_memory=cfg.data.pin_memory and dev.type == "cuda",
        persistent_workers=dev.type == "cuda" if persistent is None else persistent,
        device=dev,
    )
    return loader, dev, workers, cfg.train.batch_size, cfg.train.threads


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_epoch(loader: EpochLoader, device: torch.device, epoch: int, max_batches: int) -> tuple[int, int, float]:
    """(batches, samples, seconds) of one epoch, storage to model-ready batches on ``device``."""
    loader.set_epoch(epoch)
    n_batches = n_samples = 0
    t0 = time.perf_counter()
    for batch in loader:
        batch = to_device(batch, device)
        n_batches += 1
        n_samples += int(batch["label"].shape[0])
        if n_batches >= max_batches:
            break
    _sync(device)
    return n_batches, n_samples, time.perf_counter() - t0


def data_benchmark(
    dataset: str,
    overrides: dict | None = None,
    root=None,
    device: str = "auto",
    paths=tuple(PATHS),
    rounds: int = 3,
    max_batches: int = 10**9,
    warmup_batches: int = 1,
    echo=print,
) -> list[DataBenchResult]:
    """Samples/s of each data path (see the module docstring); paths are measured one after the
    other, each with a short warm-up (worker start, first memory-map reads) before its rounds."""
    out = []
    if "cache" not in get_dataset(dataset).presets().get("paper", {}):
        paths = ("decode",)  # no decoded cache for this dataset: its one loading path
    for path in paths:
        if path not in PATHS:
            raise DataError(f"unknown data path {path!r}; choose from {', '.join(PATHS)}")
        has_cache = "cache" in get_dataset(dataset).presets().get("paper", {})
        sets = {**dict(overrides or {}), **(PATHS[path] if has_cache else {})}
        try:
            loader, dev, workers, batch, threads = _loader(dataset, sets, root, device)
        except DataError as exc:
            if path == "decode" or not has_cache:
                raise
            out.append(DataBenchResult(path, 0, device, 0, 0, [], skipped=str(exc)))
            continue
        speeds, timed = [], 0
        with torch_threads(threads):  # the main process computes with train.threads, as in a run
            if warmup_batches:
                time_epoch(loader, dev, 10_000, warmup_batches)
            for r in range(rounds):
                timed, samples, seconds = time_epoch(loader, dev, r, max_batches)
                speeds.append(samples / seconds)
                echo(f"  {path}: round {r + 1}/{rounds}: {samples / seconds:,.0f} samples/s")
        out.append(DataBenchResult(path, workers, str(dev), batch, timed, speeds, threads=threads))
    return out


def data_markdown_table(results: list[DataBenchResult], dataset: str, machine: str, note: str = "") -> str:
    lines = [
        f"### `{dataset}` data path, storage to model-ready batch — {machine}" + (f" — {note}" if note else ""),
        "",
        "| path | workers | main-process threads | device | batch | batches / round | samples/s (median) | min | max |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.skipped:
            lines.append(f"| {r.path} | | | | | | skipped: {r.skipped} | | |")
            continue
        lines.append(
            f"| {r.path} | {r.workers} | {r.threads} | {r.device} | {r.batch_size} | {r.batches} | **{r.median:,.0f}** | "
            f"{min(r.samples_per_s):,.0f} | {max(r.samples_per_s):,.0f} |"
        )
    return "\n".join(lines) + "\n"
