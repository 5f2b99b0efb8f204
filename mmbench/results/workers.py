"""Worker processes of mmbench's pools: they never outlive their parent and never inherit the
CLI's signal handling.

``mmbench`` turns SIGTERM into ``KeyboardInterrupt`` (``cli.main``) so that a stopped command
checkpoints and says so. A *forked* pool worker inherits that handler, and a pool's exit
terminates its workers with SIGTERM: each would print a ``KeyboardInterrupt`` traceback.
``worker_signals`` gives a worker the default SIGTERM (terminate) and ignores SIGINT (Ctrl-C
reaches the whole process group; the parent stops the pool).

A worker whose parent is killed with SIGKILL is re-parented and would train on alone.
``exit_with_parent`` asks Linux to send it SIGKILL when its parent dies (``prctl
PR_SET_PDEATHSIG``) and, where that is not available, starts a daemon thread that checks the
parent id every second and ends the worker when it changes. The multiprocessing resource tracker
then sees its last pipe close and exits too.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time

PR_SET_PDEATHSIG = 1


def worker_signals() -> None:
    """Default SIGTERM, ignored SIGINT (the parent handles Ctrl-C and stops the pool)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _watch(parent: int, interval: float) -> None:
    while True:
        time.sleep(interval)
        if os.getppid() != parent:
            os._exit(1)  # the parent is gone: finished epochs are checkpointed, the seed lock is released


def exit_with_parent(interval: float = 1.0) -> None:
    """End this process when its parent dies (``prctl`` on Linux, plus a parent-id watch thread)."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the watch thread alone
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch, args=(parent, interval), daemon=True, name="mmbench-parent-watch").start()


def pool_worker_init() -> None:
    """Initializer of mmbench's process pools: both of the above."""
    worker_signals()
    exit_with_parent()
