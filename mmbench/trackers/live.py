"""Live logging while a run trains: after each epoch's record is written (``history.jsonl``, then
``last.ckpt``), a background thread replays the new lines into the run's trackers
(``replay.Replayer``). Training never waits for a tracker: the loop only puts a token on a queue;
a slow or failing tracker (server down, disk full) delays or loses its own curves, never the run.

At the end of the run (finished, failed or interrupted) the thread catches up once more and
closes the tracker runs; the trainer waits for that at most ``CLOSE_TIMEOUT_S`` seconds, then
leaves the thread behind (a daemon) with a warning: ``mmbench sync`` replays what it missed.
"""

from __future__ import annotations

import functools
import queue
import threading
from contextlib import contextmanager

from mmbench.trackers.names import logger_names
from mmbench.trackers.replay import Replayer, stderr_warn

CLOSE_TIMEOUT_S = 60.0
_EPOCH, _CLOSE = "epoch", "close"


class LiveTrackers:
    """The trackers of one training call, driven by one background thread."""

    def __init__(self, run_dir, names, warn=stderr_warn, options: dict | None = None):
        self.names = logger_names(names)
        self.warn = warn
        self.replayer = Replayer(run_dir, self.names, warn, options)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="mmbench-trackers", daemon=True)
        self._thread.start()

    def epoch_written(self) -> None:
        """Called by the trainer after an epoch's record is on disk; returns at once."""
        self._queue.put((_EPOCH, None))

    def close(self, status: str, timeout: float | None = None) -> None:
        timeout = CLOSE_TIMEOUT_S if timeout is None else timeout
        self._queue.put((_CLOSE, status))
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.warn(
                f"warning: the {', '.join(self.names)} logger(s) did not finish within {timeout:g} s; left "
                f"behind: `mmbench sync --logger NAME` replays {self.replayer.run_dir} later"
            )

    def _work(self) -> None:
        while True:
            kind, status = self._queue.get()
            if kind == _EPOCH:
                pending_close = None
                while True:  # several epochs queued meanwhile: one catch-up covers them
                    try:
                        kind, status = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if kind == _CLOSE:
                        pending_close = status
                        break
                self._safe(self.replayer.catch_up)
                if pending_close is None:
                    continue
                status = pending_close
            self._safe(self.replayer.catch_up)
            self._safe(functools.partial(self.replayer.close, status))
            return

    def _safe(self, fn) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - the replayer reports per tracker; this is a last guard
            self.warn(f"warning: tracker logging stopped ({type(exc).__name__}: {exc})")


def run_status(exc: BaseException | None) -> str:
    """The tracker-run status of a training call that ended with ``exc``."""
    if exc is None:
        return "finished"
    from mmbench.errors import MediaError, NonFiniteLossError

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
