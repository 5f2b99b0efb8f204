"""``mmbench sync``: replay finished records into trackers after the fact (for runs trained
without one, or whose live logger failed). Idempotent: each run's ``trackers.json`` says what
every tracker has received, so a second sync logs nothing and opens no tracker run.

Only seeds with a ``result.json`` (finished or failed) are replayed; a seed still training (or
interrupted) is left to the command that trains it. Damaged records are reported, not skipped
silently (``store.scan_results``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mmbench.results import store
from mmbench.trackers.names import check_loggers
from mmbench.trackers.replay import Replayer, stderr_warn


@dataclass
class SyncReport:
    runs: int = 0  # seeds looked at
    updated: list[str] = field(default_factory=list)  # seed folders that got new steps
    steps: int = 0  # (tracker, epoch) steps logged
    failures: list[str] = field(default_factory=list)  # "<folder>: <logger>: <error>"
    problems: list = field(default_factory=list)  # store.Problem of unreadable / partial seeds


def sync_run(run_dir, names, warn=stderr_warn, status: str | None = None) -> tuple[int, dict[str, str]]:
    """Replay one seed folder; returns the steps logged and the trackers that failed."""
    if status is None:
        rec, _ = store.read_record(run_dir)
        status = (rec or {}).get("status", "interrupted")
    replayer = Replayer(run_dir, names, warn)
    replayer.catch_up()
    replayer.close(status)
    return replayer.logged, dict(replayer.failed)


def sync_results(results_root, names, datasets=None, methods=None, warn=stderr_warn) -> SyncReport:
    """Replay every finished or failed record under ``results_root`` into ``names``."""
    names = check_loggers(names)
    scan = store.scan_results(results_root, datasets, methods)
    report = SyncReport(problems=list(scan.problems))
    for rec in scan.records:
        report.runs += 1
        steps, failed = sync_run(Path(rec["path"]), names, warn, rec["status"])
        report.steps += steps
        if steps:
            report.updated.append(rec["path"])
        report.failures += [f"{rec['path']}: {n}: {e}" for n, e in failed.items()]
    return report
