"""The worker loop: claim a trial, train its folds as ordinary runs, tell Optuna.

Each worker (``--jobs J`` processes, other terminals, other machines, SLURM tasks) loops over the
studies round-robin, one trial per study per round, so a study cut short leaves every method
with about the same number of trials:

1. adopt an orphan: a RUNNING trial inside the plan whose ``trial-NNNN.lock`` is free (its
   worker died; its fold runs resume from ``last.ckpt``);
2. else, while some plan index has no trial yet, ``study.ask`` a new one (``PlanSampler`` gives it
   ``plan[trial.number]``); a number beyond the plan (the last-trial race) is marked
   ``mmbench_overflow`` and failed, and every reader ignores it;
3. hold the trial's lock, train fold runs ``seed = 1000 + j`` (j < K x R, fold = seed mod K) with
   ``data.cv_folds = K``, ``train.eval_test = false``, ``train.keep_checkpoints = false``, tag
   ``tune-L-tNNNN``; finished folds are read, not retrained;
4. tell the mean of ``selection.val.val.fusion.<metric>`` over the folds. A fold that diverges
   (``NonFiniteLossError``) fails the trial (a result: it counts toward N; the other folds are not
   trained, the runs being deterministic). Any other error leaves the trial RUNNING with
   ``last_error`` for the next run to adopt, and the command exits 1.

The run records are the truth; ``rebuild_ledger`` recreates a study from them.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from mmbench.results import store
from mmbench.results.errors import ConfigError, MMBenchError, NonFiniteLossError
from mmbench.tuning.study import (
    TRIAL_SEED_START,
    Study,
    open_optuna_study,
    require_optuna,
    trial_lock,
)

OVERFLOW = "mmbench_overflow"


@dataclass
class FoldResult:
    status: str  # finished | diverged | busy | crash
    value: float | None = None
    path: str = ""
    seconds: float = 0.0
    reason: str = ""


@dataclass
class WorkReport:
    told: int = 0
    failed: int = 0
    crashed: list = field(default_factory=list)  # one line per crashed trial
    busy: int = 0


def fold_job(st: Study, index: int, j: int, root=None, keep_checkpoints: bool = False):
    from mmbench.benchmark.suites import Job, freeze

    return Job(
        st.dataset,
        st.method,
        TRIAL_SEED_START + j,
        freeze(st.trial_overrides(index, keep_checkpoints)),
        st.trial_tag(index),
        None if root is None else str(root),
    )


def record_value(rec: dict, metric: str) -> float:
    """The objective of one fold run: fusion ``metric`` on val at its val-selected epoch."""
    return float(rec["selection"]["val"]["val"]["fusion"][metric])


def _is_divergence(error: str | None) -> bool:
    return bool(error) and str(error).startswith("non-finite")


def run_fold(
    st: Study, index: int, j: int, results, root=None, device="cpu", echo=None, keep_checkpoints: bool = False
) -> FoldResult:
    from mmbench.benchmark.launch import job_config
    from mmbench.benchmark.runstate import SeedBusy, SeedDone, seed_status
    from mmbench.benchmark.trainer import train_run

    job = fold_job(st, index, j, root, keep_checkpoints)
    try:
        cfg, out_dir = job_config(job, results, device)
        state = seed_status(out_dir, cfg)
        if state.refused:
            return FoldResult("crash", path=str(out_dir), reason=state.reason)
        if state.status not in ("finished", "failed"):
            try:
                train_run(cfg, results, root=root, progress=False, echo=echo or (lambda *_: None))
            except SeedBusy:
                return FoldResult("busy", path=str(out_dir))
            except SeedDone:
                pass
            except NonFiniteLossError as exc:
                return FoldResult("diverged", path=str(out_dir), reason=str(exc))
        rec = store.read_json(out_dir / store.RESULT)
        if rec is None:
            return FoldResult("crash", path=str(out_dir), reason="no result.json after training")
        if rec.get("status") == "failed":
            if _is_divergence(rec.get("error")):
                return FoldResult("diverged", path=str(out_dir), reason=rec["error"])
            return FoldResult("crash", path=str(out_dir), reason=str(rec.get("error")))
        return FoldResult(
            "finished", record_value(rec, st.metric), str(out_dir), float(rec.get("seconds", 0.0))
        )
    except MMBenchError as exc:
        return FoldResult("crash", reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - a crash of one trial must not stop the others
        return FoldResult("crash", reason=f"{type(exc).__name__}: {exc}")


def _set_attrs(storage, study, number: int, attrs: dict) -> None:
    trial_id = study.trials[number]._trial_id if study.trials[number].number == number else None
    if trial_id is None:
        trial_id = next(t._trial_id for t in study.trials if t.number == number)
    for k, v in attrs.items():
        storage.set_trial_user_attr(trial_id, k, v)


def _tell(study, storage, number: int, value: float | None, attrs: dict, optuna) -> None:
    """Tell once; a trial already finished (a worker died between tell and its unlock) must
    agree with what the records say."""
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    if frozen.state.is_finished():
        if value is not None and frozen.value is not None and frozen.value != value:
            raise ConfigError(
                f"trial {number} of {study.study_name} was told {frozen.value} but its records "
                f"give {value}: rebuild the ledger (mmbench tune --rebuild-ledger)"
            )
        return
    _set_attrs(storage, study, number, attrs)
    if value is None:
        study.tell(number, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(number, value)


def run_trial(
    st: Study,
    study,
    storage,
    index: int,
    results,
    optuna,
    root=None,
    device="cpu",
    echo=print,
    keep_checkpoints: bool = False,
) -> str:
    """Train trial ``index``'s folds and tell: ``complete``, ``failed`` (divergence), ``busy``
    (a fold is trained elsewhere) or ``crash``."""
    values, paths, seconds = [], [], 0.0
    for j in range(st.n_folds()):
        fr = run_fold(st, index, j, results, root, device, None, keep_checkpoints)
        paths.append(fr.path)
        if fr.status == "busy":
            return "busy"
        if fr.status == "crash":
            _set_attrs(storage, study, index, {"last_error": fr.reason[:500]})
            echo(
                f"{st.name} trial {index}: CRASHED in fold run seed {TRIAL_SEED_START + j}: {fr.reason} "
                f"({fr.path or 'no record'}); left for resume"
            )
            return "crash"
        if fr.status == "diverged":
            _tell(
                study,
                storage,
                index,
                None,
                {"reason": fr.reason, "runs": paths, "plan_index": index, "fold_values": values},
                optuna,
            )
            echo(
                f"{st.name} trial {index}: FAIL ({fr.reason} in fold seed {TRIAL_SEED_START + j}) {st.plan[index]}"
            )
            return "failed"
        values.append(fr.value)
        seconds += fr.seconds
    value = math.fsum(values) / len(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    _tell(
        study,
        storage,
        index,
        value,
        {
            "plan_index": index,
            "fold_values": values,
            "fold_std": sd,
            "runs": paths,
            "seconds": round(seconds, 2),
        },
        optuna,
    )
    shown = " ".join(f"{k.split('.')[-1]}={_fmt(v)}" for k, v in st.plan[index].items())
    echo(
        f"{st.name} trial {index}: val {st.metric} {100 * value:.2f} ± {100 * sd:.2f} ({seconds:.0f}s) {shown}"
    )
    return "complete"


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _claim(st: Study, study, storage, results, optuna, tried: set):
    """(trial number, its lock context) to train next, or None when this study has nothing free."""
    while True:
        st.sync_adaptive_plan(study)
        trials = study.get_trials(deepcopy=False)
        RUNNING = optuna.trial.TrialState.RUNNING
        for t in trials:
            if (
                t.state == RUNNING
                and t.number < st.n_planned()
                and not t.user_attrs.get(OVERFLOW)
                and t.number not in tried
            ):
                lock = trial_lock(st, results, t.number)
                if lock.__enter__():
                    return t.number, lock
                lock.__exit__(None, None, None)
        existing = {t.number for t in trials}
        if all(i in existing for i in range(st.n_planned())):
            return None
        trial = study.ask(fixed_distributions=st.distributions())
        if trial.number >= st.n_planned():
            trial.set_user_attr(OVERFLOW, True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return None
        st.sync_adaptive_plan(study)
        lock = trial_lock(st, results, trial.number)
        if lock.__enter__():
            return trial.number, lock
        lock.__exit__(None, None, None)


def work(
    studies: list[Study],
    storage_spec,
    results,
    root=None,
    device="cpu",
    echo=print,
    keep_checkpoints: bool = False,
) -> WorkReport:
    """One worker: trials round-robin over ``studies`` until none is free."""
    optuna = require_optuna()
    storage = storage_spec.open()
    opened = [(st, open_optuna_study(st, storage, optuna, storage_spec.display)) for st in studies]
    report = WorkReport()
    tried: dict[str, set] = {st.name: set() for st in studies}
    active = list(opened)
    while active:
        still = []
        for st, study in active:
            claim = _claim(st, study, storage, results, optuna, tried[st.name])
            if claim is None:
                continue
            number, lock = claim
            try:
                tried[st.name].add(number)
                roots = root.get(st.dataset) if isinstance(root, dict) else root
                outcome = run_trial(
                    st, study, storage, number, results, optuna, roots, device, echo, keep_checkpoints
                )
            finally:
                lock.__exit__(None, None, None)
            if outcome == "crash":
                report.crashed.append(f"{st.name} trial {number}")
            elif outcome == "busy":
                report.busy += 1
            else:
                report.told += 1
                report.failed += outcome == "failed"
            still.append((st, study))
        active = still
    return report


def _worker_main(studies, storage_spec, results, root, device, keep_checkpoints, queue) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        rep = work(
            studies, storage_spec, results, root, device, lambda m: print(m, flush=True), keep_checkpoints
        )
        queue.put(("ok", rep.told, rep.failed, rep.crashed, rep.busy))
    except MMBenchError as exc:
        queue.put(("error", str(exc)))


def work_pool(
    studies,
    storage_spec,
    results,
    n_jobs: int,
    root=None,
    device="cpu",
    echo=print,
    keep_checkpoints: bool = False,
) -> WorkReport:
    """``--jobs J``: J spawned worker processes, each running ``work`` on the same studies."""
    if n_jobs <= 1:
        return work(studies, storage_spec, results, root, device, echo, keep_checkpoints)
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(studies, storage_spec, str(results), root, device, keep_checkpoints, queue),
        )
        for _ in range(n_jobs)
    ]
    for p in procs:
        p.start()
    report = WorkReport()
    try:
        import queue as queue_mod

        pending = len(procs)
        while pending:
            try:
                msg = queue.get(timeout=2)
            except queue_mod.Empty:
                if not any(p.is_alive() for p in procs) and queue.empty():
                    break  # a worker died without reporting (killed): its trial is left for adoption
                continue
            pending -= 1
            if msg[0] == "error":
                report.crashed.append(msg[1])
                continue
            report.told += msg[1]
            report.failed += msg[2]
            report.crashed += msg[3]
            report.busy += msg[4]
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    for p in procs:
        p.join()
        if p.exitcode not in (0, None):
            report.crashed.append(f"worker process {p.pid} exited with {p.exitcode}")
    return report


# --------------------------------------------------------------------------- reading a study
@dataclass
class StudyState:
    complete: list  # (number, value, attrs)
    failed: list
    running: list  # (number, lock free?)
    not_started: int
    overflow: int
    hours: float
    best: tuple | None  # (number, value, sd)


def trial_lock_free(st: Study, results, number: int) -> bool:
    with trial_lock(st, results, number) as held:
        return held


def study_state(st: Study, study, results, optuna) -> StudyState:
    st.sync_adaptive_plan(study)
    TS = optuna.trial.TrialState
    complete, failed, running, overflow = [], [], [], 0
    seconds = 0.0
    seen = set()
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get(OVERFLOW) or t.number >= st.n_planned():
            overflow += t.user_attrs.get(OVERFLOW, False)
            continue
        seen.add(t.number)
        if t.state == TS.COMPLETE:
            complete.append((t.number, t.value, t.user_attrs))
            seconds += t.user_attrs.get("seconds", 0.0)
        elif t.state == TS.FAIL:
            failed.append((t.number, None, t.user_attrs))
        elif t.state == TS.RUNNING:
            running.append((t.number, trial_lock_free(st, results, t.number)))
    not_started = sum(1 for i in range(st.n_planned()) if i not in seen)
    best = None
    for number, value, attrs in sorted(complete):
        if best is None or value > best[1]:
            best = (number, value, attrs.get("fold_std", 0.0))
    return StudyState(complete, failed, running, not_started, overflow, seconds / 3600, best)


def edge_warnings(st: Study, params: dict) -> list[str]:
    """A best value in the outer 5% of its range (log scale for log dimensions)."""
    out = []
    for d in st.dims:
        v = params.get(d.key)
        if d.kind == "categorical" or v is None:
            if d.kind == "categorical" and len(d.choices) > 2 and v in (d.choices[0], d.choices[-1]):
                out.append(
                    f"best {d.key.split('.')[-1]} = {v!r} is the {'first' if v == d.choices[0] else 'last'} "
                    f"choice of {d.describe()}"
                )
            continue
        lo, hi, x = (math.log(d.low), math.log(d.high), math.log(v)) if d.log else (d.low, d.high, float(v))
        pos = (x - lo) / (hi - lo)
        if pos <= 0.05 or pos >= 0.95:
            edge = "lower" if pos <= 0.05 else "upper"
            out.append(f"best {d.key.split('.')[-1]} = {v:.4g} at the {edge} edge of {d.describe()}")
    return out


def status_line(st: Study, state: StudyState) -> str:
    orphans = sum(1 for _, free in state.running if free)
    parts = [
        f"{len(state.complete)} complete",
        f"{len(state.failed)} failed",
        f"{len(state.running) - orphans} running",
        f"{orphans} orphaned",
        f"{state.not_started} not started",
    ]
    text = f"{st.name}: " + ", ".join(parts) + f" of {st.n_planned()}"
    if state.best is not None:
        n, v, sd = state.best
        text += f"; best trial {n}: val {st.metric} {100 * v:.2f} ± {100 * sd:.2f}"
        warn = edge_warnings(st, st.plan[n])
        if warn:
            text += " (" + "; ".join(warn) + ")"
    text += f"; {state.hours:.3f} training hours"
    return text


def rebuild_ledger(st: Study, storage, results, optuna) -> int:
    """Recreate the Optuna study from the fold records (``study.add_trial``): COMPLETE where
    every fold finished, FAIL where one diverged; trials without records are left out. Returns
    the number of trials added."""
    from mmbench.benchmark.launch import job_config

    if st.sampler == "tpe":
        raise ConfigError(
            f"{st.name}: --rebuild-ledger needs a planned sampler (random, sobol, grid); a tpe "
            "study's parameters were asked live and only its ledger holds them"
        )
    try:
        optuna.delete_study(study_name=st.name, storage=storage)
    except KeyError:
        pass
    study = open_optuna_study(st, storage, optuna)
    dists = st.distributions()
    added = 0
    for index in range(len(st.plan)):
        values, paths, seconds, failed = [], [], 0.0, None
        for j in range(st.n_folds()):
            _, out_dir = job_config(fold_job(st, index, j), results)
            rec = store.read_json(Path(out_dir) / store.RESULT)
            if rec is None:
                break
            paths.append(str(out_dir))
            if rec.get("status") == "failed":
                if _is_divergence(rec.get("error")):
                    failed = rec["error"]
                break
            values.append(record_value(rec, st.metric))
            seconds += float(rec.get("seconds", 0.0))
        complete = len(values) == st.n_folds()
        if not complete and failed is None:
            break  # trial numbers must stay plan indices: stop at the first gap
        attrs = {"plan_index": index, "fold_values": values, "runs": paths, "rebuilt": True}
        if complete:
            value = math.fsum(values) / len(values)
            attrs.update(
                fold_std=statistics.stdev(values) if len(values) > 1 else 0.0, seconds=round(seconds, 2)
            )
            trial = optuna.trial.create_trial(
                params=st.plan[index], distributions=dists, value=value, user_attrs=attrs
            )
        else:
            attrs["reason"] = failed
            trial = optuna.trial.create_trial(
                params=st.plan[index],
                distributions=dists,
                state=optuna.trial.TrialState.FAIL,
                user_attrs=attrs,
            )
        study.add_trial(trial)
        added += 1
    return added


def elapsed(t0: float) -> str:
    return f"{time.time() - t0:.1f}s"
