"""Benchmark (not collected by pytest): ``mmbench report`` and ``mmbench table`` over 500
synthetic run records (5 datasets x 20 runs x 5 seeds, 30 epochs of history each).

    PYTHONPATH=$PWD:$PWD/tests python tests/bench_reporting.py [/tmp/reporting-bench]

Prints wall and CPU seconds of each command, run as a fresh process as a user would.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from reporting_fixtures import write_synthetic_records


def _timed(cmd: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(root: Path) -> None:
    if not any(root.glob("*/*/seed-*/result.json")):
        n = write_synthetic_records(root)
        print(f"wrote {n} run records under {root}")
    mmbench = [sys.executable, "-m", "mmbench.cli"]
    out = root / "report.html"
    for name, cmd in [
        ("report", [*mmbench, "report", "--results", str(root), "--out", str(out)]),
        ("report -j 1", [*mmbench, "report", "--results", str(root), "--out", str(out), "--jobs", "1"]),
        ("table md", [*mmbench, "table", "--results", str(root)]),
        ("table latex", [*mmbench, "table", "--results", str(root), "--format", "latex"]),
    ]:
        wall, cpu = _timed(cmd)
        print(f"{name:<12} wall {wall:6.2f} s   cpu {cpu:6.2f} s")
    print(f"report size {out.stat().st_size / 1e6:.2f} MB; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/reporting-bench"))
