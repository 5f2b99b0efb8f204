"""The state of one seed's run directory against a requested config, and its training lock.

``seed_status(out_dir, cfg)`` is the one place that decides whether a seed is trained, resumed
or skipped (``mmbench run`` via ``launch.run_local``, and the sweep): a seed is skipped only when
the identity hash stored in its ``config.json`` equals the requested one; any other stored
config is *drift* and is refused with one line naming the run folder, the differing keys
(``identity.differing_keys``) and the choices (``--rerun``, another ``--tag``). An unreadable
record is named with what to do, never skipped or overwritten silently.

``seed_lock(out_dir)`` is the per-seed advisory lock (``fcntl.flock`` on ``<seed>/.lock``) that
``trainer.train_run`` holds while it trains: a second process reaching that seed gets
``SeedBusy`` at once (it skips the seed and says so) instead of training it twice.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path

from mmbench.benchmark.identity import differing_keys, identity_config, identity_hash
from mmbench.results import store
from mmbench.results.errors import DiskError, MMBenchError

LOCK = ".lock"
# status values: new | partial | finished | failed (trainable or skippable) and
# drift | unreadable (refused: the caller stops before writing anything)
REFUSED = ("drift", "unreadable")


class SeedBusy(MMBenchError):
    """Another process holds the seed's lock (it is being trained right now)."""


class SeedDone(MMBenchError):
    """The seed got a record (finished or failed) between the caller's look and the lock."""


@dataclass
class SeedState:
    """What ``out_dir`` holds for the requested config."""

    status: str  # new | partial | finished | failed | drift | unreadable
    reason: str  # one line for the user ("" for new)
    out_dir: Path
    record: dict | None = field(default=None, repr=False)  # result.json when readable
    differing: list[str] = field(default_factory=list)  # drift: the dotted keys that differ

    @property
    def refused(self) -> bool:
        return self.status in REFUSED


def _read(path: Path) -> tuple[dict | None, str | None]:
    """(the JSON object at ``path`` or None if absent, the problem if unreadable)."""
    try:
        obj = store.read_json(path)  # checked against its schema (store.RecordInvalid)
    except store.RecordInvalid as exc:
        return None, str(exc).removeprefix(f"{path}: ").split("; restore it")[0]
    except OSError as exc:
        if exc.errno in (errno.ENAMETOOLONG, errno.ENOTDIR, errno.ELOOP):  # the path, not the file
            raise DiskError.of(path, exc, "use") from None
        return None, f"{type(exc).__name__}: {exc}"
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        return None, f"{type(exc).__name__}: {exc}"
    if obj is not None and not isinstance(obj, dict):
        return None, "not a JSON object"
    return obj, None


def _unreadable(path: Path, problem: str, out_dir: Path) -> SeedState:
    return SeedState(
        "unreadable",
        f"{path} is unreadable ({problem}): use --rerun to train the seed again, "
        f"or move {out_dir} away to keep it",
        out_dir,
    )


def _drift(out_dir: Path, stored: dict, cfg) -> SeedState | None:
    """A drift state when the stored identity differs from ``cfg``'s, else None."""
    wanted = identity_hash(cfg)
    ident = stored.get("identity") or {}
    if ident.get("hash") == wanted:
        return None
    keys = differing_keys(ident.get("config") or {}, identity_config(cfg)) if ident.get("config") else []
    if not keys:
        keys = ["(the stored record has no identity config: written by an older mmbench)"]
    shown = ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")
    reason = (
        f"{out_dir} holds a run of another config (differing: {shown}); "
        "use --rerun to replace it, or another --tag to keep both"
    )
    return SeedState("drift", reason, out_dir, differing=keys)


def seed_status(out_dir, cfg) -> SeedState:
    """The state of seed directory ``out_dir`` for the resolved config ``cfg``."""
    out_dir = Path(out_dir)
    stored, problem = _read(out_dir / store.CONFIG)
    if problem:
        return _unreadable(out_dir / store.CONFIG, problem, out_dir)
    if stored is not None and "identity" not in stored:
        stored = None  # an older config.json: the result's hash decides, else the checkpoint's config
    if stored is not None:
        drift = _drift(out_dir, stored, cfg)
        if drift is not None:
            return drift
    record, problem = _read(out_dir / store.RESULT)
    if problem:
        return _unreadable(out_dir / store.RESULT, problem, out_dir)
    if record is not None:
        return _recorded(out_dir, record, cfg, stored)
    if (out_dir / store.CHECKPOINT).is_file():
        return SeedState("partial", f"resuming {out_dir}", out_dir)
    return SeedState("new", "", out_dir)


def _recorded(out_dir: Path, record: dict, cfg, stored: dict | None) -> SeedState:
    """finished / failed for a readable result.json (drift when it has no config.json and its
    own identity hash differs)."""
    if stored is None:
        drift = _drift(out_dir, record, cfg)
        if drift is not None:
            return drift
    if record.get("status") == "finished":
        return SeedState("finished", f"already finished: {out_dir}", out_dir, record)
    return SeedState("failed", f"failed earlier ({record.get('error')}): {out_dir}", out_dir, record)


@contextlib.contextmanager
def seed_lock(out_dir):
    """Hold the advisory lock of ``out_dir`` (created if needed); ``SeedBusy`` if another process
    holds it. The lock is released when the block ends or the process dies."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir / LOCK, os.O_RDWR | os.O_CREAT, store.file_mode())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SeedBusy(f"{out_dir} is being trained by another process (lock {out_dir / LOCK})") from None
        yield
    finally:
        os.close(fd)
