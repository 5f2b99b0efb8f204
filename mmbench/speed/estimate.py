"""Estimated device-hours of a suite from ``mmbench bench`` figures (``mmbench reproduce --dry-run``).

The figures are the markdown tables ``mmbench bench --append FILE`` writes: a heading
``### `<dataset>` step time — <machine> ...`` followed by one row per method with the batch size
and the median step time in ms. For one pending run the estimate is

    median step time x ceil(train items / batch size) x epochs

i.e. training steps only (evaluation, data checks and start-up are not counted). It is given only
where all three are known: a bench row for the run's dataset and method measured on a GPU (the
machine text does not start with "CPU") at the run's batch size, and the training-set size, which
is counted from the data root (or known for embedded data). Anything else is "unknown", with why.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from mmbench.results.errors import MMBenchError

_HEADING = re.compile(r"^#+\s*`(?P<dataset>[^`]+)` step time — (?P<machine>.*)$")


@dataclass(frozen=True)
class BenchFigure:
    dataset: str
    method: str
    batch_size: int
    step_ms: float
    machine: str

    @property
    def on_gpu(self) -> bool:
        return not self.machine.strip().upper().startswith("CPU")


def _first(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:100]


def read_bench_figures(path) -> list[BenchFigure]:
    """Every method row of every ``mmbench bench`` table in ``path`` (later tables after earlier)."""
    out, dataset, machine = [], None, ""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MMBenchError(f"cannot read the bench figures {path} ({type(exc).__name__}: {_first(exc)}); "
                           "give a UTF-8 file written by `mmbench bench --append` with --bench FILE") from None
    for line in text.splitlines():
        text = line.strip()
        head = _HEADING.match(text)
        if head:
            dataset, machine = head["dataset"], head["machine"]
        elif text.startswith("#"):
            dataset = None  # another section: its tables are not bench tables
        elif text.startswith("|") and dataset is not None:
            cells = [c.strip() for c in text.strip("|").split("|")]
            try:
                out.append(BenchFigure(dataset, cells[0], int(cells[1]), float(cells[2]), machine))
            except (ValueError, IndexError):  # the header and separator rows
                continue
    return out


def lookup_step(figures: list[BenchFigure], dataset: str, method: str, batch_size: int) -> tuple[float | None, str]:
    """(seconds per step, where it came from) or (None, why unknown); the last matching row wins."""
    rows = [f for f in figures if f.dataset == dataset and f.method == method]
    if not rows:
        return None, f"no bench figure for {dataset}/{method}"
    gpu = [f for f in rows if f.on_gpu]
    if not gpu:
        return None, f"bench figures for {dataset}/{method} are from a CPU ({rows[-1].machine})"
    same = [f for f in gpu if f.batch_size == batch_size]
    if not same:
        return None, f"bench figures for {dataset}/{method} use batch {gpu[-1].batch_size}, the run uses {batch_size}"
    return same[-1].step_ms / 1000.0, same[-1].machine


def run_hours(step_s: float, n_train: int, batch_size: int, epochs: int) -> float:
    return step_s * math.ceil(n_train / batch_size) * epochs / 3600.0


def estimate_text(todo, results_root, bench_path) -> str:
    """The GPU-hours line of ``mmbench reproduce --dry-run`` for the pending jobs ``todo``: the
    sum over the runs whose step time and training-set size are known, and one line per reason
    for the others."""
    from mmbench.benchmark.launch import job_config
    from mmbench.benchmark.registry import get_dataset

    if not todo:
        return "nothing to train"
    if bench_path is None or not Path(bench_path).is_file():
        return (f"estimated GPU-hours: unknown (no `mmbench bench` figures at {bench_path}; write them with "
                "`mmbench bench --dataset D --method M --device cuda --append FILE` and pass --bench FILE)")
    figures = read_bench_figures(bench_path)
    total, unknown, sizes = 0.0, {}, {}
    for job in todo:
        cfg, _ = job_config(job, results_root)
        step, why = lookup_step(figures, job.dataset, job.method, cfg.train.batch_size)
        if step is not None and job.dataset not in sizes:
            try:
                spec = get_dataset(job.dataset)
                sizes[job.dataset] = len(spec.splits(spec.resolve_root(job.root), cfg.data)["train"])
            except Exception as exc:  # noqa: BLE001 - missing data: the size is unknown, not guessed
                sizes[job.dataset] = f"training-set size unknown ({type(exc).__name__}: {str(exc)[:80]})"
        n = sizes.get(job.dataset)
        if step is None or not isinstance(n, int):
            unknown.setdefault(why if step is None else n, []).append(job)
            continue
        total += run_hours(step, n, cfg.train.batch_size, cfg.train.epochs)
    known = len(todo) - sum(len(v) for v in unknown.values())
    lines = [f"estimated GPU-hours (training steps only, from {bench_path}): "
             + (f"{total:.2f} for {known} of {len(todo)} pending runs" if known else "unknown")]
    for why, jobs in unknown.items():
        lines.append(f"  unknown for {len(jobs)} run(s): {why}")
    return "\n".join(lines)
