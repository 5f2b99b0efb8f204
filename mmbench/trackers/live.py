"""Live logging while a run trains: after each epoch's record is written (``history.jsonl``, then
``last.ckpt``), a separate process replays the new lines into the run's trackers
(``replay.Replayer``). The training process only writes one byte to a pipe: a slow or failing
tracker (server down, disk full) delays or loses its own curves, never the run. A process, not a
thread: tracker libraries then hold no lock the training loop needs (the interpreter's included),
capture no output of it, and their Python warnings never mix with the harness's own (which
records the warnings raised while it evaluates).

At the end of the run (finished, failed or interrupted) the logger process catches up once more
and closes the tracker runs; the trainer waits for that at most ``CLOSE_TIMEOUT_S`` seconds, then
leaves it (a daemon process, ended with the command) with a warning: ``mmbench sync`` replays
what it missed. The logger process ignores Ctrl-C (the trainer tells it how the run ended) and
stops by itself when the training process dies (its pipe closes). It runs at a lower CPU
priority (``LOGGER_NICENESS``): on a machine with few cores, tracker start-up (MLflow's store
migrations, the W&B service) otherwise takes CPU time from the epochs.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from contextlib import contextmanager

from mmbench.trackers.names import logger_names
from mmbench.trackers.replay import Replayer, stderr_warn

CLOSE_TIMEOUT_S = 60.0
LOGGER_NICENESS = 10  # the logger process (and a W&B service it starts) runs at a lower CPU priority
_EPOCH = "epoch"


def _serve(run_dir: str, names: tuple, conn) -> None:
    """The logger process: a catch-up per message (several queued epochs: one catch-up), then,
    on the closing message (the run's status) or a closed pipe, a last catch-up and close."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(LOGGER_NICENESS)  # where cores are scarce, training gets them first
    except OSError:
        pass
    replayer = Replayer(run_dir, names, stderr_warn)
    status = "interrupted"  # the training process died without saying how the run ended
    while True:
        try:
            message = conn.recv()
            while message == _EPOCH and conn.poll():
                message = conn.recv()
        except (EOFError, OSError):
            break
        _safe(replayer.catch_up)
        if message != _EPOCH:
            status = message
            break
    _safe(replayer.catch_up)
    _safe(lambda: replayer.close(status))


def _safe(fn) -> None:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the replayer reports per tracker; this is a last guard
        stderr_warn(f"warning: tracker logging stopped ({type(exc).__name__}: {exc})")


class LiveTrackers:
    """The trackers of one training call, driven by one logger process."""

    def __init__(self, run_dir, names, warn=stderr_warn):
        self.names = logger_names(names)
        self.run_dir = run_dir
        self.warn = warn
        ctx = mp.get_context("spawn")  # never fork a process that holds torch threads
        reader, self._conn = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=_serve, args=(str(run_dir), self.names, reader), name="mmbench-trackers", daemon=True
        )
        self._proc.start()
        reader.close()

    def _send(self, message: str) -> None:
        try:
            self._conn.send(message)
        except (OSError, ValueError):  # the logger process is gone: it reported why on stderr
            pass

    def epoch_written(self) -> None:
        """Called by the trainer after an epoch's record is on disk; returns at once."""
        self._send(_EPOCH)

    def close(self, status: str, timeout: float | None = None) -> None:
        timeout = CLOSE_TIMEOUT_S if timeout is None else timeout
        self._send(status)
        self._proc.join(timeout)
        self._conn.close()
        if self._proc.is_alive():
            self.warn(
                f"warning: the {', '.join(self.names)} logger(s) did not finish within {timeout:g} s; left "
                f"behind: `mmbench sync --logger NAME` replays {self.run_dir} later"
            )


def run_status(exc: BaseException | None) -> str:
    """The tracker-run status of a training call that ended with ``exc``."""
    if exc is None:
        return "finished"
    from mmbench.results.errors import MediaError, NonFiniteLossError

    return "failed" if isinstance(exc, (NonFiniteLossError, MediaError)) else "interrupted"


@contextmanager
def attached(session, warn=stderr_warn):
    """Around the epoch loop of ``trainer.train_run``: starts the loggers of
    ``session.cfg.train.loggers`` (none: nothing happens) as ``session.trackers``, replays the
    epochs of earlier calls (a resumed run), and closes them with the run's status."""
    names = logger_names(getattr(session.cfg.train, "loggers", ()))
    if not names:
        yield None
        return
    live = LiveTrackers(session.out_dir, names, warn)
    session.trackers = live
    live.epoch_written()  # a resume: epochs an earlier call wrote and no tracker received
    error = None
    try:
        yield live
    except BaseException as exc:
        error = exc
        raise
    finally:
        session.trackers = None
        live.close(run_status(error))


def epoch_written(session) -> None:
    """The trainer's hook after each epoch's record is written (no-op without loggers)."""
    live = getattr(session, "trackers", None)
    if live is not None:
        live.epoch_written()
