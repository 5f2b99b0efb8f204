"""Processes: pool workers end when their parent is killed with SIGKILL (no orphans training on);
workers do not inherit the CLI's SIGTERM-as-KeyboardInterrupt handler; a broken dataset plugin
is named with its error, as a broken method plugin is."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmbench.results import workers


def _children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_pool_workers_end_when_their_parent_is_killed_with_sigkill(tmp_path):
    repo = Path(__file__).parents[2]
    cmd = [sys.executable, "-c", "from mmbench.cli import main; main()", "run", "-m", "joint", "-d", "mfeat",
           "--seeds", "2", "--jobs", "2", "--results", str(tmp_path / "r"), "--set", "epochs=200",
           "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    parent = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.time() + 240
        kids: list[int] = []
        while time.time() < deadline and len(kids) < 3:  # two workers and the resource tracker
            time.sleep(1)
            kids = _children(parent.pid)
        assert len(kids) >= 2, f"the pool did not start: children {kids}"
        while time.time() < deadline and not list((tmp_path / "r").rglob("history.jsonl")):
            time.sleep(1)  # the workers are training
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        end = time.time() + 30
        while time.time() < end and any(_alive(k) for k in kids):
            time.sleep(0.5)
        assert not [k for k in kids if _alive(k)], "orphaned workers kept running"
    finally:  # the whole session (start_new_session: its group id is the parent's pid), orphans included
        try:
            os.killpg(parent.pid, signal.SIGKILL)
        except OSError:
            pass


def _sigterm_is_default() -> bool:
    return signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def test_forked_workers_get_the_default_sigterm_not_the_clis_handler():
    old = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # what cli.main installs
    try:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(1) as pool:  # without the initializer the worker inherits the handler
            assert pool.apply(_sigterm_is_default) is False
        with ctx.Pool(1, initializer=workers.pool_worker_init) as pool:
            assert pool.apply(_sigterm_is_default) is True
    finally:
        signal.signal(signal.SIGTERM, old)


def test_a_watched_child_ends_when_its_parent_dies(tmp_path):
    """The parent-id watch: a grandchild started with exit_with_parent ends once its parent is gone."""
    script = tmp_path / "family.py"
    script.write_text(
        "import os, sys, time\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from mmbench.results.workers import exit_with_parent\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    exit_with_parent(0.1)\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        "print(pid, flush=True)\n"
        "time.sleep(1)\n"
        "os._exit(0)\n"
    )
    out = subprocess.run([sys.executable, str(script), str(Path(__file__).parents[2])], capture_output=True,
                         text=True, timeout=60)
    child = int(out.stdout.split()[0])
    end = time.time() + 10
    while time.time() < end and _alive(child):
        time.sleep(0.2)
    assert not _alive(child)
