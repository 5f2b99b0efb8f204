"""Local launcher: the seeds of ``mmbench run`` and the runs of ``mmbench sweep``, in this process
or in a pool of worker processes.

Three named steps, the same for both commands:

1. ``plan``: the state of every run (``runstate.seed_status``): finished runs whose stored
   identity hash equals the requested one are skipped, partial ones resume, a run trained with
   another config or an unreadable record is refused before anything is trained (one line: the
   folder, the differing keys or the damaged file, ``--rerun`` or another ``--tag``);
2. ``execute``: the runs to train, one after another in this process (``jobs == 1``: epoch
   logs and progress bars) or in a ``concurrent.futures.ProcessPoolExecutor`` on a *spawn*
   context (``jobs > 1``). Pool workers are ordinary, non-daemon processes, so the loaders may
   start DataLoader workers; on a CUDA machine worker ``i`` sees only GPU ``i % n_gpus``
   (``CUDA_VISIBLE_DEVICES``), on CPU each worker is one share of the cores. Every run computes
   with its own ``train.threads`` wherever it runs (``train_run``), so a pool gives the metrics of
   a sequential run. The seed's lock (``runstate.seed_lock``) keeps two pools from training one
   seed twice. One line per finished run;
3. ``summarise_outcomes``: the counts and the failures.

Killed and rerun, a sweep trains only the runs without a finished record (each epoch is
checkpointed atomically, so a partial run resumes at its last finished epoch).
"""

from __future__ import annotations

import os
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from mmbench.benchmark.config import RunConfig, resolve_config
from mmbench.benchmark.registry import get_dataset
from mmbench.benchmark.runstate import SeedBusy, SeedDone, seed_status
from mmbench.results import store
from mmbench.results.errors import ConfigError, MediaError, MMBenchError, NonFiniteLossError

MANY_SEEDS = 1000  # `run --seeds N` above this says that it is planning
PLAN_PROGRESS_S = 5  # seconds between planning progress lines
# busy: another process holds the seed's lock (it is being trained right now)
OUTCOMES = ("finished", "skipped", "busy", "failed", "interrupted")


# --------------------------------------------------------------------------- jobs and outcomes
@dataclass
class JobOutcome:
    job: object  # suites.Job
    status: str  # one of OUTCOMES
    reason: str = ""
    seconds: float = 0.0
    path: str = ""
    summary: str = ""  # the test accuracies of a finished run, for its one line


def job_config(job, results_root, device: str = "auto") -> tuple[RunConfig, Path]:
    """The run's resolved config, with the dataset's on-disk choices made (``concrete_options``:
    identity is computed from it), and its seed folder."""
    cfg = resolve_config(job.dataset, job.method, job.overrides_dict, seed=job.seed, tag=job.tag, device=device)
    spec = get_dataset(job.dataset)
    try:
        root = spec.resolve_root(job.root)
    except MMBenchError:
        root = None  # no data root: the run's data check says so
    if root is not None and Path(root).is_dir():
        cfg.data.options = spec.concrete_options(root, cfg.data)
    return cfg, store.run_dir(results_root, job.dataset, cfg.run_name, job.seed)


def summary_line(result: dict) -> str:
    """Test accuracy of every head at the val-selected epoch, and the training time."""
    sel = result["selection"].get("val")
    if not sel:
        return "no selectable epoch"
    split = "test" if sel.get("test") is not None else "val"  # train.eval_test = false: val only
    test = sel[split]
    heads = ["fusion"] + [h for h in test if h != "fusion"]
    accs = " ".join(f"{h} {100 * test[h]['acc']:.2f}" for h in heads if h in test)
    return f"{split} acc {accs} (val-selected epoch {sel['epoch']}) in {result.get('seconds', 0):.1f}s"


def run_job(job, results_root, device: str = "auto", progress: bool = False, echo=None,
            strict: bool = False, rerun: bool = False) -> JobOutcome:
    """Train one job in this process (``train_run`` takes the seed's lock, skips a seed recorded
    meanwhile, resumes a partial one, computes with ``train.threads``); every error becomes a
    failed outcome with its reason, so one bad job never stops a sweep. ``strict`` (``mmbench
    run``): a usage, config or data error is raised instead (one line, exit 2)."""
    from mmbench.benchmark.trainer import Interrupted, train_run

    t0 = time.time()
    out_dir = ""
    try:
        cfg, out_dir = job_config(job, results_root, device)
        result = train_run(cfg, results_root, root=job.root, progress=progress, echo=echo or (lambda *_: None),
                           rerun=rerun)
        return JobOutcome(job, "finished", "", time.time() - t0, str(out_dir), summary_line(result))
    except SeedBusy as exc:
        return JobOutcome(job, "busy", str(exc), 0.0, str(out_dir))
    except SeedDone as exc:
        return JobOutcome(job, "skipped", str(exc), 0.0, str(out_dir))
    except Interrupted as exc:
        return JobOutcome(job, "interrupted", str(exc), time.time() - t0, str(out_dir))
    except MMBenchError as exc:
        if strict and not isinstance(exc, (NonFiniteLossError, MediaError)):
            raise
        return JobOutcome(job, "failed", str(exc), time.time() - t0, str(out_dir))
    except Exception as exc:  # noqa: BLE001 - report any crash as this job's failure
        tb = traceback.format_exc(limit=3).strip().splitlines()[-1]
        return JobOutcome(job, "failed", f"{type(exc).__name__}: {exc} ({tb})", time.time() - t0, str(out_dir))


# --------------------------------------------------------------------------- step 1: plan
def plan(jobs, results_root, rerun: bool = False, refuse: bool = True, echo=None) -> tuple[list, list[JobOutcome]]:
    """Split ``jobs`` into those to train and those already done, by ``runstate.seed_status``
    (a seed is skipped only when its stored identity hash equals the requested one). A run of
    another config or an unreadable record raises one ``ConfigError`` before anything is
    trained (``refuse=False``, for ``--dry-run``: a ``drift``/``unreadable`` outcome instead).
    With ``rerun`` every job trains (``train_run`` clears its records under the seed's lock)."""
    todo, done, refused = [], [], []
    t_last = time.time()
    for i, job in enumerate(jobs):
        if echo is not None and time.time() - t_last > PLAN_PROGRESS_S:  # a long plan says where it is
            echo(f"planning: {i}/{len(jobs)} runs checked against {results_root}")
            t_last = time.time()
        cfg, out_dir = job_config(job, results_root)
        state = seed_status(out_dir, cfg)
        if rerun or state.status in ("new", "partial"):
            todo.append(job)
        elif state.refused:
            refused.append(state)
            done.append(JobOutcome(job, state.status, state.reason, path=str(out_dir)))
        else:
            done.append(JobOutcome(job, "skipped", state.reason, path=str(out_dir)))
    if refused and refuse:
        more = f" (+{len(refused) - 1} more runs like it; `mmbench sweep --dry-run` lists them)" if len(refused) > 1 else ""
        raise ConfigError(refused[0].reason + more)
    return todo, done


# --------------------------------------------------------------------------- step 2: execute
def seed_workers(n_runs: int, device: str = "auto") -> int:
    """One worker per GPU on a CUDA machine, else one per CPU core; never more than the runs."""
    n_gpus = _gpu_count(device)
    return max(1, min(n_runs, n_gpus or _cpu_count()))


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _gpu_count(device: str) -> int:
    if device not in ("auto", "cuda"):
        return 0
    import torch

    return torch.cuda.device_count()


def _init_worker(slots, gpu_ids: list[str], start_method: str) -> None:
    """Pool worker start: take a slot, see only its GPU, leave Ctrl-C to the parent (which stops
    the pool; every finished epoch is already checkpointed), and start DataLoader workers the way
    the parent would: a spawned process inherits *spawn* as its default start method, and
    spawned loader workers re-import torch every epoch (14 s against 0.5 s per loader on the
    2-core test machine, BENCHMARKS.md)."""
    import multiprocessing as mp

    from mmbench.results.workers import pool_worker_init

    pool_worker_init()  # SIGINT ignored, default SIGTERM, ends when the parent dies (even by SIGKILL)
    mp.set_start_method(start_method, force=True)
    slot = slots.get()
    if gpu_ids:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_ids[slot % len(gpu_ids)]


def _pool_job(job, results_root: str, device: str, rerun: bool) -> JobOutcome:
    return run_job(job, results_root, device, rerun=rerun)


def _visible_gpus(n_gpus: int) -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else [str(i) for i in range(n_gpus)]
    return ids[:n_gpus]


def _stop(pool: ProcessPoolExecutor) -> None:
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(timeout=10)


def execute_pool(todo, results_root, n_jobs: int, device: str, on_outcome, rerun: bool = False) -> list[JobOutcome]:
    """Train ``todo`` in ``n_jobs`` spawn-context worker processes; ``on_outcome(outcome)`` is
    called as each run ends. A worker that dies (e.g. killed for memory) fails its runs."""
    import multiprocessing as mp

    gpu_ids = _visible_gpus(_gpu_count(device))
    worker_device = "cuda" if gpu_ids else ("cpu" if device == "auto" else device)
    ctx = mp.get_context("spawn")
    slots = ctx.Queue()
    for slot in range(n_jobs):
        slots.put(slot)
    outcomes = []
    pool = ProcessPoolExecutor(n_jobs, mp_context=ctx, initializer=_init_worker,
                               initargs=(slots, gpu_ids, mp.get_start_method()))
    try:
        pending = {pool.submit(_pool_job, job, str(results_root), worker_device, rerun): job for job in todo}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                job = pending.pop(fut)
                try:
                    outcome = fut.result()
                except BrokenProcessPool:
                    outcome = JobOutcome(job, "failed", "its worker process died (out of memory?); rerun to resume it")
                outcomes.append(outcome)
                on_outcome(outcome)
    except KeyboardInterrupt:
        _stop(pool)
        raise
    pool.shutdown(wait=True)
    return outcomes


def execute(todo, results_root, n_jobs: int, device: str = "auto", echo=print, progress: bool = False,
            line=None, strict: bool = False, rerun: bool = False) -> list[JobOutcome]:
    """Train ``todo``: in this process when ``n_jobs == 1`` (with the trainer's epoch lines and,
    on a terminal, progress bars), else in a worker pool; ``line(outcome)`` prints each ending."""
    line = line or (lambda o: echo(outcome_line(o)))
    if n_jobs <= 1:
        outcomes = []
        for job in todo:
            outcome = run_job(job, results_root, device, progress=progress, echo=echo, strict=strict, rerun=rerun)
            outcomes.append(outcome)
            line(outcome)
            if outcome.status == "interrupted":
                break
        return outcomes
    return execute_pool(todo, results_root, n_jobs, device, line, rerun)


def outcome_line(o: JobOutcome) -> str:
    extra = f": {o.summary or o.reason}" if (o.summary or o.reason) else ""
    return f"{o.status} {o.job.label()} ({o.seconds:.1f}s){extra}"


# --------------------------------------------------------------------------- the two commands
def seed_jobs(dataset: str, method: str, seeds, overrides: dict, tag: str | None = None, root=None) -> list:
    from mmbench.benchmark.suites import Job, freeze

    return [Job(dataset, method, s, freeze(overrides), tag, None if root is None else str(root)) for s in seeds]


def run_local(dataset: str, method: str, seeds, overrides: dict, results_root, root=None, device: str = "auto",
              tag: str | None = None, rerun: bool = False, progress: bool = True, echo=print,
              n_jobs: int | None = None) -> list[JobOutcome]:
    """``mmbench run``: train ``seeds`` (``n_jobs`` at a time; default ``seed_workers``). A
    finished (or failed) seed of the same config is skipped unless ``rerun``; a NaN in one seed
    marks that seed failed and the others still run."""
    if len(seeds) > MANY_SEEDS:
        echo(f"planning {len(seeds)} seeds (each checked against its folder; progress every {PLAN_PROGRESS_S} s)")
    jobs = seed_jobs(dataset, method, seeds, overrides, tag, root)
    todo, done = plan(jobs, results_root, rerun, echo=echo)
    for o in done:
        echo(f"seed {o.job.seed}: skipped, {o.reason} (use --rerun to train it again)")
    n_jobs = min(n_jobs or seed_workers(len(todo), device), max(1, len(todo)))
    if n_jobs > 1:
        _check_data_once(dataset, root, todo[0], echo)  # a data error is one line, not one per worker
        echo(f"training {len(todo)} seeds in {n_jobs} worker processes")
    outcomes = execute(todo, results_root, n_jobs, device, echo, progress and n_jobs == 1,
                       line=lambda o: echo(_seed_line(o)), strict=True, rerun=rerun)
    return done + outcomes


def _check_data_once(dataset: str, root, job, echo) -> None:
    """The dataset check ``train_run`` does, before workers start: raises one ``DataError``."""
    from mmbench.benchmark.registry import get_dataset
    from mmbench.benchmark.trainer import check_data

    cfg, _ = job_config(job, ".")
    for warning in check_data(get_dataset(dataset), root, cfg.data)[1]:
        echo(f"warning: {warning}")


def _seed_line(o: JobOutcome) -> str:
    if o.status == "finished":
        return f"seed {o.job.seed}: {o.summary} -> {o.path}"
    if o.status == "failed":
        return f"seed {o.job.seed}: FAILED: {o.reason}" + _record_note(o.path)
    if o.status in ("skipped", "busy"):
        return f"seed {o.job.seed}: skipped, {o.reason}"
    return f"seed {o.job.seed}: {o.reason}"


def _record_note(path: str) -> str:
    """What the failed seed's folder holds now: claim only a record that was written."""
    status = store.run_status(path) if path else "new"
    if status == "failed":
        return f"; record marked failed in {path}"
    if status == "finished":
        return f"; the earlier finished record in {path} was kept"
    return f"; no record written in {path}" if path else ""


def sweep_local(jobs, results_root, n_jobs: int = 1, device: str = "auto", echo=print,
                rerun: bool = False) -> list[JobOutcome]:
    """``mmbench sweep --launcher local``: plan, then train the pending runs ``n_jobs`` at a time."""
    todo, outcomes = plan(jobs, results_root, rerun, echo=echo)
    report_done(outcomes, echo)
    if not todo:
        echo(f"nothing to run: all {len(outcomes)} runs already have records")
        return outcomes
    n_jobs = max(1, min(n_jobs, len(todo)))
    where = "this process" if n_jobs == 1 else f"{n_jobs} worker(s)"
    echo(f"running {len(todo)} runs in {where}; {len(outcomes)} already done")
    count = [0]

    def line(o: JobOutcome) -> None:
        count[0] += 1
        echo(f"[{count[0]}/{len(todo)}] {outcome_line(o)}")

    from mmbench.benchmark.suites import reference_phases

    for phase in reference_phases(todo):  # unimodal reference runs first when other runs need them
        outcomes += execute(phase, results_root, min(n_jobs, len(phase)), device, lambda *_: None, False, line,
                            rerun=rerun)
    return outcomes


def report_done(outcomes: list[JobOutcome], echo, limit: int = 20) -> None:
    """One line per skipped run, up to ``limit``."""
    for o in outcomes[:limit]:
        echo(f"skip {o.job.label()}: {o.reason}")


def summarise_outcomes(outcomes: list[JobOutcome]) -> str:
    counts = {s: sum(o.status == s for o in outcomes) for s in OUTCOMES}
    lines = [
        f"sweep: {counts['finished']} done, {counts['skipped']} skipped, {counts['failed']} failed"
        + (f", {counts['busy']} being trained by another process" if counts["busy"] else "")
        + (f", {counts['interrupted']} interrupted" if counts["interrupted"] else "")
    ]
    reasons: dict[str, int] = {}
    for o in outcomes:
        if o.status == "skipped":
            key = "failed earlier" if failed_earlier(o) else "already finished"
            reasons[key] = reasons.get(key, 0) + 1
    if reasons:
        lines.append("  skipped: " + ", ".join(f"{n} {k}" for k, n in reasons.items()))
    for o in outcomes:
        if o.status in ("failed", "busy"):
            lines.append(f"  {o.status} {o.job.label()}: {o.reason}")
    return "\n".join(lines)


def failed_earlier(o: JobOutcome) -> bool:
    """A skipped run whose record is a failure (the command still exits non-zero)."""
    return o.status == "skipped" and o.reason.startswith("failed")
