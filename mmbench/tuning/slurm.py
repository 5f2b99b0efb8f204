"""``mmbench tune --launcher slurm``: W worker tasks in one submitit job array.

Each task runs the same worker loop as a local worker (``runner.work``): it claims trials through
the shared ledger and the trial locks on the shared results filesystem, so any number of tasks
serve the studies without training one trial twice. On preemption or timeout submitit calls
``checkpoint()``, which requeues the worker; the trial it held becomes an orphan (its lock is
released with the process) and the next free worker adopts it, resuming its fold runs from
``last.ckpt``.
"""

from __future__ import annotations

from pathlib import Path

from mmbench.benchmark.slurm import SlurmOptions
from mmbench.benchmark.slurm import executor as slurm_executor


class WorkerTask:
    """A picklable, checkpointable submitit task: one tuning worker."""

    def __init__(self, studies, storage_spec, results: str, device: str, roots, keep_checkpoints: bool):
        self.args = (studies, storage_spec, results, device, roots, keep_checkpoints)

    def __call__(self):
        from mmbench.tuning.runner import work

        studies, storage_spec, results, device, roots, keep = self.args
        rep = work(studies, storage_spec, results, roots, device, print, keep)
        return {"told": rep.told, "failed": rep.failed, "crashed": rep.crashed, "busy": rep.busy}

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(WorkerTask(*self.args))


def submit_workers(
    studies,
    storage_spec,
    results,
    workers: int,
    device,
    roots,
    keep_checkpoints,
    echo,
    options: SlurmOptions | None = None,
) -> int:
    """Submit ``workers`` worker tasks; returns 0 (the tasks report through the ledger:
    ``mmbench tune --status``)."""
    options = options or SlurmOptions()
    executor = slurm_executor(Path(results) / "_slurm" / "tune", options, name="mmbench-tune")
    with executor.batch():
        jobs = [
            executor.submit(WorkerTask(studies, storage_spec, str(results), device, roots, keep_checkpoints))
            for _ in range(workers)
        ]
    echo(
        f"submitted {len(jobs)} tuning workers"
        + (f": job {jobs[0].job_id.split('_')[0]}" if jobs else "")
        + "; follow them with mmbench tune --status"
    )
    return 0
