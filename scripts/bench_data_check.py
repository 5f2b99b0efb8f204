"""Time `mmbench data check` on a ~1,000-clip CREMA-D fixture (first run, memoised second run,
and the sampled `--quick` check), and the CLI's start-up (`--help`, a name error).

    python scripts/bench_data_check.py [--n-per-class 82] [--dir /tmp/mmbench-bench]

Each timing is a fresh `mmbench` process (start-up included), so it is what a user waits."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def timed(args: list[str], env: dict) -> tuple[float, int, str]:
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "mmbench.cli", *args], env=env, capture_output=True, text=True)
    return time.perf_counter() - t, res.returncode, (res.stdout + res.stderr).strip().splitlines()[-1:]


def in_process(root: Path, cache: Path) -> None:
    """``spec.check`` alone (start-up excluded): quick, full, and full again (memoised)."""
    os.environ["XDG_CACHE_HOME"] = str(cache)
    from mmbench.benchmark.config import resolve_config
    from mmbench.benchmark.registry import get_dataset

    spec, cfg = get_dataset("cremad"), resolve_config("cremad", "joint", {}).data
    for label, deep in (("quick", False), ("full, first run", True), ("full, second run (memoised)", True)):
        cfg.check_deep = deep
        t = time.perf_counter()
        spec.check(root, cfg)
        print(f"in-process check, {label}: {time.perf_counter() - t:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-per-class", type=int, default=82)  # 6 classes x (2n + 3) = 1,002 clips
    ap.add_argument("--dir", type=Path, default=Path("/tmp/mmbench-bench"))
    a = ap.parse_args()
    shutil.rmtree(a.dir, ignore_errors=True)
    env = {**os.environ, "XDG_CACHE_HOME": str(a.dir / "cache")}
    from mmbench.datasets.fixtures import write_fixture

    root = write_fixture("cremad", a.dir / "cremad", "ogm", a.n_per_class)
    n_clips = len(list((root / "AudioWAV").glob("*.wav")))
    n_jpg = len(list((root / "Image-01-FPS").rglob("*.jpg")))
    print(f"fixture: {n_clips} clips, {n_clips} wavs, {n_jpg} jpgs")
    for label, args in (("check --quick (20 clips per split)", ["--quick"]), ("check, first run", []),
                        ("check, second run (memoised)", [])):
        s, rc, tail = timed(["data", "check", "cremad", "--root", str(root), *args], env)
        print(f"{label}: {s:.2f} s (exit {rc}) {tail}")
    in_process(root, a.dir / "cache-in-process")
    for label, args in (("mmbench --help", ["--help"]), ("mmbench run -m nosuch -d mfeat", ["run", "-m", "nosuch", "-d", "mfeat"])):
        best = min(timed(args, env)[0] for _ in range(3))
        print(f"{label}: {best:.2f} s (best of 3)")


if __name__ == "__main__":
    main()
