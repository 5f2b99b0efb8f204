"""Launchers. ``run_local`` trains the seeds of one (dataset, method, overrides) in this process,
skipping finished seeds and resuming partial ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mmbench.benchmark import store
from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.runstate import SeedBusy, SeedDone, seed_status
from mmbench.benchmark.trainer import Interrupted, train_run
from mmbench.errors import NonFiniteLossError


@dataclass
class SeedOutcome:
    seed: int
    status: str  # finished | skipped | busy (another process trains it) | failed | interrupted
    path: Path
    message: str = ""
    result: dict | None = field(default=None, repr=False)


def summary_line(result: dict, modalities) -> str:
    sel = result["selection"].get("val")
    if not sel:
        return "no selectable epoch"
    test = sel["test"]
    heads = ["fusion"] + [m for m in modalities if m in test]
    accs = " ".join(f"{h} {100 * test[h]['acc']:.2f}" for h in heads)
    return f"test acc {accs} (val-selected epoch {sel['epoch']}) in {result.get('seconds', 0):.1f}s"


def plan_seeds(dataset, method, seeds, overrides, results_root, tag, device, rerun) -> list:
    """``[(cfg, SeedState)]`` of every seed, checked before any is trained: drift or an
    unreadable record raises one ``ConfigError`` line (unless ``rerun``, which replaces them)."""
    from mmbench.errors import ConfigError

    planned = []
    for seed in seeds:
        cfg = resolve_config(dataset, method, overrides, seed=seed, tag=tag, device=device)
        state = seed_status(store.run_dir(results_root, dataset, cfg.run_name, seed), cfg)
        if state.refused and not rerun:
            raise ConfigError(state.reason)
        planned.append((cfg, state))
    return planned


def run_local(
    dataset: str,
    method: str,
    seeds,
    overrides: dict,
    results_root,
    root=None,
    device: str = "auto",
    tag: str | None = None,
    rerun: bool = False,
    progress: bool = True,
    echo=print,
) -> list[SeedOutcome]:
    """Train ``seeds`` one after another. Every seed's state is checked first
    (``runstate.seed_status``): a seed holding another config or an unreadable record stops the
    command before anything is written (``ConfigError``, one line). A finished or failed seed
    is skipped unless ``rerun``; a seed another process is training is skipped and said so; a
    NaN or an undecodable file in one seed marks that seed failed and the others still run."""
    from mmbench.benchmark.registry import get_dataset
    from mmbench.errors import MediaError

    spec = get_dataset(dataset)
    outcomes = []
    for cfg, state in plan_seeds(dataset, method, seeds, overrides, results_root, tag, device, rerun):
        seed, out_dir = cfg.seed, state.out_dir
        if state.status in ("finished", "failed") and not rerun:
            echo(f"seed {seed}: skipped, {state.reason} (use --rerun to train it again)")
            outcomes.append(SeedOutcome(seed, "skipped", out_dir, state.reason, state.record))
            continue
        try:
            result = train_run(cfg, results_root, root=root, progress=progress, echo=echo, rerun=rerun)
        except (NonFiniteLossError, MediaError) as exc:
            echo(f"seed {seed}: FAILED: {exc}; record marked failed in {out_dir}")
            outcomes.append(SeedOutcome(seed, "failed", out_dir, str(exc)))
            continue
        except SeedBusy as exc:
            echo(f"seed {seed}: skipped, {exc}")
            outcomes.append(SeedOutcome(seed, "busy", out_dir, str(exc)))
            continue
        except SeedDone as exc:
            echo(f"seed {seed}: skipped, {exc}")
            outcomes.append(SeedOutcome(seed, "skipped", out_dir, str(exc), store.read_json(out_dir / store.RESULT)))
            continue
        except Interrupted as exc:
            echo(f"seed {seed}: {exc}")
            outcomes.append(SeedOutcome(seed, "interrupted", out_dir, str(exc)))
            break
        echo(f"seed {seed}: {summary_line(result, spec.modalities)} -> {out_dir}")
        outcomes.append(SeedOutcome(seed, "finished", out_dir, result=result))
    return outcomes


# --------------------------------------------------------------------------- sweeps
@dataclass
class JobOutcome:
    job: object  # suites.Job
    status: str  # finished | skipped | failed | interrupted
    reason: str = ""
    seconds: float = 0.0
    path: str = ""


def job_config(job, results_root, device: str = "auto"):
    cfg = resolve_config(job.dataset, job.method, job.overrides_dict, seed=job.seed, tag=job.tag, device=device)
    return cfg, store.run_dir(results_root, job.dataset, cfg.run_name, job.seed)


def run_job(job, results_root, device: str = "auto") -> JobOutcome:
    """Train one job in this process (finished runs are skipped, partial ones resume); every
    error becomes a failed outcome with its reason, so one bad job never stops a sweep."""
    import time
    import traceback

    from mmbench.errors import MMBenchError

    t0 = time.time()
    try:
        cfg, out_dir = job_config(job, results_root, device)
        status = store.run_status(out_dir)
        if status in ("finished", "failed"):
            prev = store.read_json(out_dir / store.RESULT) or {}
            why = "already finished" if status == "finished" else f"failed earlier: {prev.get('error')}"
            return JobOutcome(job, "skipped", why, 0.0, str(out_dir))
        train_run(cfg, results_root, root=job.root, progress=False, echo=lambda *_: None)
        return JobOutcome(job, "finished", "", time.time() - t0, str(out_dir))
    except NonFiniteLossError as exc:
        return JobOutcome(job, "failed", str(exc), time.time() - t0)
    except Interrupted as exc:
        return JobOutcome(job, "interrupted", str(exc), time.time() - t0)
    except MMBenchError as exc:
        return JobOutcome(job, "failed", str(exc), time.time() - t0)
    except Exception as exc:  # noqa: BLE001 - report any crash as this job's failure
        tb = traceback.format_exc(limit=3).strip().splitlines()[-1]
        return JobOutcome(job, "failed", f"{type(exc).__name__}: {exc} ({tb})", time.time() - t0)


def _worker(slot: int, threads: int, jobs_q, out_q, results_root, device: str) -> None:
    import torch

    torch.set_num_threads(threads)
    while True:
        item = jobs_q.get()
        if item is None:
            return
        index, job = item
        out_q.put((index, slot, run_job(job, results_root, device)))


def pending_jobs(jobs, results_root) -> tuple[list, list[JobOutcome]]:
    """Split jobs into those to run and those already done (skipped, with the reason)."""
    todo, done = [], []
    for job in jobs:
        _, out_dir = job_config(job, results_root)
        status = store.run_status(out_dir)
        if status == "finished":
            done.append(JobOutcome(job, "skipped", "already finished", path=str(out_dir)))
        elif status == "failed":
            err = (store.read_json(out_dir / store.RESULT) or {}).get("error")
            done.append(JobOutcome(job, "skipped", f"failed earlier: {err}", path=str(out_dir)))
        else:
            todo.append(job)
    return todo, done


def sweep_local(jobs, results_root, n_jobs: int = 1, device: str = "auto", echo=print) -> list[JobOutcome]:
    """Run pending jobs in ``n_jobs`` worker processes. On a CUDA machine worker i sees only GPU
    ``i % n_gpus`` (``CUDA_VISIBLE_DEVICES``); on CPU each worker gets ``cores // n_jobs`` threads.
    Finished runs are skipped, partial ones resume; Ctrl-C stops the workers and keeps every
    finished epoch."""
    import multiprocessing as mp
    import os

    import torch

    todo, outcomes = pending_jobs(jobs, results_root)
    if len(outcomes) <= 20:
        for o in outcomes:
            echo(f"skip {o.job.label()}: {o.reason}")
    if not todo:
        echo(f"nothing to run: all {len(outcomes)} runs already have records")
        return outcomes
    n_jobs = max(1, min(n_jobs, len(todo)))
    n_gpus = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    threads = max(1, (os.cpu_count() or 1) // n_jobs)
    ctx = mp.get_context("spawn")
    jobs_q, out_q = ctx.Queue(), ctx.Queue()
    for i, job in enumerate(todo):
        jobs_q.put((i, job))
    for _ in range(n_jobs):
        jobs_q.put(None)
    procs = []
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        for slot in range(n_jobs):
            if n_gpus:
                os.environ["CUDA_VISIBLE_DEVICES"] = str(slot % n_gpus)
            worker_device = "cuda" if n_gpus else ("cpu" if device == "auto" else device)
            p = ctx.Process(
                target=_worker, args=(slot, threads, jobs_q, out_q, str(results_root), worker_device), daemon=True
            )
            p.start()
            procs.append(p)
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
    where = f"{n_gpus} GPU(s)" if n_gpus else f"CPU, {threads} thread(s) each"
    echo(f"running {len(todo)} runs in {n_jobs} worker(s) on {where}; {len(outcomes)} already done")
    received = 0
    try:
        while received < len(todo):
            try:
                index, slot, outcome = out_q.get(timeout=5)
            except Exception:  # noqa: BLE001 - queue.Empty: check the workers are alive
                if not any(p.is_alive() for p in procs):
                    raise RuntimeError("all sweep workers died; see the messages above") from None
                continue
            received += 1
            outcomes.append(outcome)
            extra = f": {outcome.reason}" if outcome.reason else ""
            echo(f"[{received}/{len(todo)}] {outcome.status} {outcome.job.label()} ({outcome.seconds:.1f}s, worker {slot}){extra}")
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    for p in procs:
        p.join(timeout=10)
    return outcomes


def summarise_outcomes(outcomes: list[JobOutcome]) -> str:
    counts = {s: sum(o.status == s for o in outcomes) for s in ("finished", "skipped", "failed", "interrupted")}
    lines = [
        f"sweep: {counts['finished']} done, {counts['skipped']} skipped, {counts['failed']} failed"
        + (f", {counts['interrupted']} interrupted" if counts["interrupted"] else "")
    ]
    reasons: dict[str, int] = {}
    for o in outcomes:
        if o.status == "skipped":
            key = "already finished" if o.reason == "already finished" else "failed earlier"
            reasons[key] = reasons.get(key, 0) + 1
    if reasons:
        lines.append("  skipped: " + ", ".join(f"{n} {k}" for k, n in reasons.items()))
    for o in outcomes:
        if o.status == "failed":
            lines.append(f"  failed {o.job.label()}: {o.reason}")
    return "\n".join(lines)
