"""Training-step throughput of methods: ``mmbench bench``.

For each method, the run is built exactly as ``train_run`` builds it (same data, backbones,
heads, optimisers), then ``steps`` training steps are timed after ``warmup`` steps, split into
*data wait* (fetching the next batch and copying it to the device) and *compute* (the method's
``training_step``; CUDA is synchronised before the clock stops). Methods are measured in
interleaved rounds so that background load hits all of them alike, and each method's median step
time is reported as a ratio to ``joint`` on the same backbone and batch.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time
from dataclasses import dataclass

import torch

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.loaders import to_device
from mmbench.benchmark.registry import get_dataset, get_method
from mmbench.benchmark.trainer import build_run, check_data, resolve_device
from mmbench.results.registry import BASELINE_METHOD


@dataclass
class BenchResult:
    method: str
    batch_size: int
    step_s: float  # median total step time
    data_s: float  # median data wait per step
    compute_s: float  # median compute per step
    steps: int

    @property
    def samples_per_s(self) -> float:
        return self.batch_size / self.step_s if self.step_s > 0 else float("inf")

    @property
    def data_fraction(self) -> float:
        return self.data_s / self.step_s if self.step_s > 0 else 0.0


class _Runner:
    """One built run whose training steps can be timed repeatedly."""

    def __init__(self, dataset, method, overrides, root, device):
        # ``method.<key>`` overrides go only to the methods that have that hyper-parameter
        names = {f"method.{f.name}" for f in dataclasses.fields(get_method(method).Hyper)}
        overrides = {k: v for k, v in overrides.items() if not k.startswith("method.") or k in names}
        cfg = resolve_config(dataset, method, overrides, seed=0, device=device)
        spec = get_dataset(dataset)
        self.device = resolve_device(cfg.device)
        data_root, _ = check_data(spec, root, cfg.data)
        self.run = build_run(cfg, spec, get_method(method), data_root, self.device)
        if getattr(self.run.method, "needs_unimodal_teachers", False):  # timing only: teachers' cost, not weights
            from mmbench.benchmark.unimodal_init import stand_in_teacher_heads, stand_in_teachers

            self.run.method.set_teachers(stand_in_teachers(self.run))
            self.run.method.set_teacher_heads(stand_in_teacher_heads(self.run))
        self.batch_size = cfg.train.batch_size
        self.epoch = 0
        self._iter = None
        self.run.method.on_epoch_start(self.run.ctx)
        self.run.model.train()

    def _next_batch(self):
        while True:
            if self._iter is None:
                self.run.train_loader.set_epoch(self.epoch)
                self._iter = iter(self.run.train_loader)
            try:
                return next(self._iter)
            except StopIteration:
                self._iter = None
                self.epoch += 1

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time_steps(self, n: int) -> tuple[list[float], list[float]]:
        data, compute = [], []
        ctx = self.run.ctx
        for _ in range(n):
            t0 = time.perf_counter()
            batch = to_device(self._next_batch(), self.device)
            self._sync()
            t1 = time.perf_counter()
            self.run.method.training_step(self.run.model, batch, ctx)
            self._sync()
            t2 = time.perf_counter()
            ctx.global_step += 1
            ctx.step_in_epoch += 1
            data.append(t1 - t0)
            compute.append(t2 - t1)
        return data, compute


def measure_steps(
    dataset: str,
    methods,
    overrides: dict | None = None,
    root=None,
    device: str = "auto",
    steps: int = 30,
    warmup: int = 5,
    rounds: int = 3,
) -> list[BenchResult]:
    """Median step time of each method (``joint`` is always included, as the reference)."""
    methods = list(dict.fromkeys([BASELINE_METHOD, *methods]))
    runners = {m: _Runner(dataset, m, dict(overrides or {}), root, device) for m in methods}
    for r in runners.values():
        r.time_steps(warmup)
    per_round = max(1, steps // rounds)
    samples = {m: ([], []) for m in methods}
    for _ in range(rounds):
        for m, r in runners.items():
            d, c = r.time_steps(per_round)
            samples[m][0].extend(d)
            samples[m][1].extend(c)
    out = []
    for m in methods:
        d, c = samples[m]
        total = [a + b for a, b in zip(d, c)]
        out.append(
            BenchResult(m, runners[m].batch_size, statistics.median(total), statistics.median(d),
                        statistics.median(c), len(total))
        )
    return out


def machine_description(device: str = "auto") -> str:
    dev = resolve_device(device)
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)}, torch {torch.__version__}"
    return f"CPU {platform.processor() or platform.machine()} x{os.cpu_count()} (torch default threads={torch.get_num_threads()}), torch {torch.__version__}"


def markdown_table(results: list[BenchResult], dataset: str, machine: str, note: str = "") -> str:
    ref = next(r for r in results if r.method == BASELINE_METHOD)
    lines = [
        f"### `{dataset}` step time — {machine}" + (f" — {note}" if note else ""),
        "",
        "| method | batch | step ms (median) | data wait ms | compute ms | data wait % | samples/s | ratio to joint |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.method} | {r.batch_size} | {1e3 * r.step_s:.2f} | {1e3 * r.data_s:.2f} | "
            f"{1e3 * r.compute_s:.2f} | {100 * r.data_fraction:.1f} | {r.samples_per_s:.0f} | "
            f"{r.step_s / ref.step_s:.2f}x |"
        )
    return "\n".join(lines) + "\n"


benchmark = measure_steps  # the name before speed measurement left the harness; one release
