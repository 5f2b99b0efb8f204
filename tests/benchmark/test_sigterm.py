"""SIGTERM (what `timeout` and schedulers send) stops `mmbench run` as Ctrl-C does: one line, the
checkpoint kept, exit 130, and the same command resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow  # end-to-end sessions: every test of this file is in the slow tier


def test_sigterm_stops_a_run_like_ctrl_c_and_it_resumes(tmp_path):
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "mmbench.cli", "run", "-m", "joint", "-d", "mfeat", "--results", str(results),
           "--no-progress", "--device", "cpu", "--set", "epochs=5000", "--set", "data.limit_train_per_class=5"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    ckpt = None
    deadline = time.time() + 120
    while ckpt is None and time.time() < deadline and proc.poll() is None:
        found = list(results.glob("mfeat/*/seed-0/last.ckpt"))
        ckpt = found[0] if found else None
        time.sleep(0.05)
    assert ckpt is not None, "no checkpoint written"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "Traceback" not in out and "interrupted" in out
    assert ckpt.is_file() and not (ckpt.parent / "result.json").exists()
    again = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    line = again.stdout.readline()
    while line and "resuming" not in line:
        line = again.stdout.readline()
    again.send_signal(signal.SIGTERM)
    again.communicate(timeout=60)
    assert "resuming" in line and again.returncode == 130
