"""Full media check, in parallel, remembering files already verified.

``verify(items, root)`` decodes every ``(path, kind)`` it is given (``kind``: ``"wav"``: header
and every sample, ``audio.wav_problem``; ``"image"``: PIL ``verify()`` then a full load,
``frames.image_problem``) on a thread pool (libsndfile and PIL's decoders release the GIL, so
threads scale without the start-up cost of processes) and returns ``{path: why}`` for the files
that fail. Files that pass are remembered in a memo keyed on their size and mtime (nanoseconds):
a second check of an unchanged tree opens nothing. A file that changes (size or mtime) is decoded
again; failures are never remembered.

The memo is one JSON file per data root under the user cache
(``$XDG_CACHE_HOME/mmbench/verified/<sha256 of the root path>.json``), so read-only roots work and
the data tree is left as it is. ``MMBENCH_CHECK_JOBS`` caps the threads (default: the CPU count).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from pathlib import Path

MEMO_VERSION = 1
KINDS = ("wav", "image")


def _decoders():
    from mmbench.datasets.audio import wav_problem
    from mmbench.datasets.frames import image_problem

    return {"wav": wav_problem, "image": image_problem}


def memo_path(root: Path) -> Path:
    from mmbench.datasets.audiovisual import user_cache_dir

    digest = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]
    return user_cache_dir() / "verified" / f"{digest}.json"


def load_memo(root: Path) -> dict[str, list]:
    """``{"kind:path": [size, mtime_ns]}`` of the files verified before ({} when none or damaged:
    a damaged memo only costs a full check)."""
    try:
        data = json.loads(memo_path(root).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != MEMO_VERSION:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def save_memo(root: Path, files: dict[str, list]) -> None:
    """Write the memo atomically; a cache that cannot be written only costs the next check time."""
    path = memo_path(root)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump({"version": MEMO_VERSION, "root": str(Path(root).resolve()), "files": files}, fh)
        os.replace(tmp, path)
    except OSError:
        pass


def _signature(path: Path) -> list | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _jobs(jobs: int | None) -> int:
    if jobs:
        return max(1, jobs)
    env = os.environ.get("MMBENCH_CHECK_JOBS", "")
    return max(1, int(env)) if env.isdigit() else max(1, os.cpu_count() or 1)


_TRUST_MEMO: ContextVar[bool] = ContextVar("mmbench_trust_memo", default=True)


def trust_memo(flag: bool) -> None:
    """Whether ``verify`` skips files the memo lists as verified (same size and mtime). ``mmbench
    data check --deep`` turns it off: bytes that rot in place keep their size and mtime, so only
    decoding every file again finds them (the memo is then rewritten from that full pass)."""
    _TRUST_MEMO.set(bool(flag))


def verify(items, root: Path, jobs: int | None = None) -> dict[Path, str]:
    """Decode every ``(path, kind)`` not verified before (every one under ``trust_memo(False)``);
    ``{path: problem}`` of the failures. Files that do not exist are the caller's business
    (reported as missing) and are skipped."""
    decoders = _decoders()
    memo = load_memo(root) if _TRUST_MEMO.get() else {}
    todo, sigs = [], {}
    for path, kind in dict.fromkeys((Path(p), k) for p, k in items):
        if kind not in decoders:
            raise ValueError(f"unknown media kind {kind!r}; expected one of {', '.join(KINDS)}")
        sig = _signature(path)
        if sig is None:
            continue
        key = f"{kind}:{path}"
        if memo.get(key) == sig:
            continue
        todo.append((path, kind))
        sigs[key] = sig
    if not todo:
        return {}

    def run(item):
        path, kind = item
        return path, kind, decoders[kind](path)

    failed: dict[Path, str] = {}
    with ThreadPoolExecutor(_jobs(jobs)) as pool:
        for path, kind, why in pool.map(run, todo):
            if why:
                failed[path] = why
            else:
                memo[f"{kind}:{path}"] = sigs[f"{kind}:{path}"]
    save_memo(root, memo)
    return failed
