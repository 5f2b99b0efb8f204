"""SLURM launcher through submitit: one array task per run, requeued on preemption.

Each task calls ``launch.run_job``, which resumes from the run's ``last.ckpt``; on preemption or
timeout submitit calls ``checkpoint()``, which resubmits the same task, so a requeued task picks
up at the last finished epoch. ``cluster="local"`` runs the same path through submitit's local
executor (used by the tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmbench.results.errors import MMBenchError


@dataclass
class SlurmOptions:
    partition: str | None = None
    gpus: int = 1
    cpus: int = 8
    mem_gb: int = 32
    time_min: int = 24 * 60
    array_parallelism: int = 64
    cluster: str | None = None  # None: auto (slurm if available), "local", "debug"


class RunTask:
    """A picklable, checkpointable submitit task for one sweep job."""

    def __init__(self, job, results_root: str, device: str = "auto"):
        self.job = job
        self.results_root = results_root
        self.device = device

    def __call__(self):
        from mmbench.benchmark.launch import run_job

        out = run_job(self.job, self.results_root, self.device)
        return {"status": out.status, "reason": out.reason, "seconds": out.seconds, "path": out.path}

    def checkpoint(self, *args, **kwargs):
        """Preempted or timed out: requeue the same task; it resumes from ``last.ckpt``."""
        import submitit

        return submitit.helpers.DelayedSubmission(RunTask(self.job, self.results_root, self.device))


def executor(folder, options: SlurmOptions, name: str = "mmbench"):
    """A submitit executor for ``options`` (time, memory, CPUs; on SLURM the array parallelism,
    GPUs, partition and requeue on preemption); one line naming the extra without submitit."""
    try:
        import submitit
    except ImportError:
        raise MMBenchError("the slurm launcher needs submitit: pip install -e '.[slurm]'") from None
    ex = submitit.AutoExecutor(folder=str(Path(folder)), cluster=options.cluster)
    params = {"timeout_min": options.time_min, "mem_gb": options.mem_gb, "cpus_per_task": options.cpus, "name": name}
    if ex.cluster == "slurm":
        params.update(
            slurm_array_parallelism=options.array_parallelism,
            gpus_per_node=options.gpus,
            slurm_additional_parameters={"requeue": True},
        )
        if options.partition:
            params["slurm_partition"] = options.partition
    ex.update_parameters(**params)
    return ex


def submit(jobs, results_root, folder, options: SlurmOptions, device: str = "auto"):
    """Submit ``jobs`` as one job array; returns the submitit jobs."""
    executor_ = executor(folder, options)
    tasks = [RunTask(job, str(results_root), device) for job in jobs]
    with executor_.batch():
        submitted = [executor_.submit(task) for task in tasks]
    return submitted


def sweep_slurm(jobs, results_root, options: SlurmOptions, device: str = "auto", rerun: bool = False,
                log_dir=None, wait: bool = False, echo=print):
    """``mmbench sweep --launcher slurm``: submit the runs still to train as one array (their
    earlier records cleared here once with ``rerun``, so that a requeued task resumes rather than
    starts over). With ``wait``, the outcomes of every run (done before, or trained by the array);
    else ``None`` once submitted."""
    from mmbench.benchmark.launch import JobOutcome, job_config, plan
    from mmbench.benchmark.trainer import clear_seed

    results_root = Path(results_root)
    todo, outcomes = plan(jobs, results_root, rerun)
    if rerun:
        for job in todo:
            clear_seed(job_config(job, results_root)[1])
    submitted = submit(todo, results_root, log_dir or results_root / "_slurm", options, device)
    echo(f"submitted {len(submitted)} tasks ({len(outcomes)} already done)"
         + (f": job {submitted[0].job_id.split('_')[0]}" if submitted else ""))
    if not wait:
        return None
    for job, sj in zip(todo, submitted):
        try:
            r = sj.result()
            outcomes.append(JobOutcome(job, r["status"], r["reason"], r["seconds"], r["path"]))
        except Exception as exc:  # noqa: BLE001 - a task that crashed outright
            outcomes.append(JobOutcome(job, "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0]}"))
    return outcomes
