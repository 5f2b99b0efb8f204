"""``--rerun`` never destroys to rebuild: the seed's old records are moved aside first and deleted
only once the new record is written.

``set_aside(out_dir)`` renames the seed's record files (``result.json``, ``config.json``,
``history.jsonl``, ``last.ckpt``, ``best.ckpt``, ``probe.json``) into ``<seed>/.replaced/`` (a
rename in the same folder: nothing is copied, nothing can be half-moved; a rename that fails
moves back the files already moved and says so). ``replacing(out_dir)`` wraps a retraining: a
finished new record drops the old files; any other end (an error, a non-finite loss, Ctrl-C)
removes what the new attempt wrote and restores the old files. The run log (``runlog.jsonl``)
is append-only and stays where it is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from mmbench.results import store
from mmbench.results.errors import MMBenchError

ASIDE = ".replaced"
FILES = (store.RESULT, store.CONFIG, store.HISTORY, store.CHECKPOINT, store.BEST, store.PROBE)


def _move(names, src: Path, dst: Path) -> None:
    """Rename ``names`` from ``src`` to ``dst``; on a failure, move back those already moved."""
    moved = []
    try:
        for name in names:
            if (src / name).exists():
                os.replace(src / name, dst / name)
                moved.append(name)
    except OSError as exc:
        for name in reversed(moved):
            with contextlib.suppress(OSError):
                os.replace(dst / name, src / name)
        raise MMBenchError(
            f"cannot move {src / name} to {dst} ({exc.strerror or exc}); nothing was changed: "
            f"make {src} writable (or free space) and run the command again"
        ) from None


def set_aside(out_dir) -> Path | None:
    """Move the seed's record files into ``<seed>/.replaced/``; returns that folder (None when
    the seed had no records). A folder left by an earlier, unfinished replacement keeps the older
    records (the ones last finished); the unfinished attempt's files are removed."""
    out_dir = Path(out_dir)
    present = [n for n in FILES if (out_dir / n).exists()]
    aside = out_dir / ASIDE
    if aside.is_dir():
        for name in present:
            (out_dir / name).unlink()
        return aside
    if not present:
        return None
    try:
        aside.mkdir()
    except OSError as exc:
        raise MMBenchError(
            f"cannot create {aside} ({exc.strerror or exc}) to keep the old records while the seed is "
            f"trained again; nothing was changed: make {out_dir} writable and run the command again"
        ) from None
    _move(present, out_dir, aside)
    return aside


def restore(out_dir, aside: Path | None) -> None:
    """Remove what a failed replacement wrote and move the old records back."""
    if aside is None or not aside.is_dir():
        return
    out_dir = Path(out_dir)
    for name in FILES:
        if (aside / name).exists():
            (out_dir / name).unlink(missing_ok=True)
    _move(FILES, aside, out_dir)
    with contextlib.suppress(OSError):
        aside.rmdir()


def drop(out_dir) -> None:
    """Delete the old records of a finished replacement."""
    aside = Path(out_dir) / ASIDE
    if aside.is_dir():
        shutil.rmtree(aside)


@contextlib.contextmanager
def replacing(out_dir):
    """Train a seed again without losing its old records: set aside, then drop them when the block
    ends with a finished ``result.json``, else restore them."""
    aside = set_aside(out_dir)
    try:
        yield
    except BaseException:
        if store.run_status(out_dir) == "finished":
            drop(out_dir)
        else:
            restore(out_dir, aside)
        raise
    if store.run_status(out_dir) == "finished":
        drop(out_dir)
    else:
        restore(out_dir, aside)
