"""The one results store: run directories, atomic writes, loading run records.

Layout (ARCHITECTURE.md, "Runs and results")::

    <results>/<dataset>/<method>[-<tag>]/seed-<n>/
        config.json     resolved config + identity + versions + device (written once)
        runlog.jsonl    one line per start or resume: time, host, device, threads, versions, git
        history.jsonl   one line per finished epoch
        result.json     final metrics under each selection rule, or status "failed"
        last.ckpt       model, optimisers, method state, RNG state (for resume)
        best.ckpt       model and method state at the epochs the val and test-best rules select
        .lock           advisory lock of the process training the seed (runstate.seed_lock)

Every write goes to a temporary file in the same directory and is renamed into place, so a
killed process never leaves a half-written record. ``mkstemp`` creates that file with mode 0600;
it is given ``0o666 & ~umask`` before the rename, so records on a shared results disk are as
readable by the group as any file the user creates there.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

RESULT = "result.json"
CONFIG = "config.json"
HISTORY = "history.jsonl"
CHECKPOINT = "last.ckpt"
RUNLOG = "runlog.jsonl"
BEST = "best.ckpt"  # weights at the epochs the val and test-best rules select
SCHEMA_VERSION = 2  # result.json schema (docs/records.md)


def default_results_root() -> Path:
    return Path(os.environ.get("MMBENCH_RESULTS", "results"))


def run_dir(results_root, dataset: str, run_name: str, seed: int) -> Path:
    return Path(results_root) / dataset / run_name / f"seed-{seed}"


def _json_default(obj):
    import torch  # lazy: reading records (tables, reports) does not need torch

    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _clean(obj):
    """JSON has no NaN/inf: store them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _current_umask() -> int:
    """The process umask: read from /proc on Linux (setting it to read it back would, for an
    instant, loosen it for other threads), else set and restored."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode an ordinary new file gets under the process umask (0o644 under umask 022)."""
    return 0o666 & ~_current_umask()


def _atomic_replace(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def dumps(obj, indent: int | None = 2) -> str:
    return json.dumps(_clean(obj), indent=indent, default=_json_default, sort_keys=False)


def write_json(path, obj) -> None:
    data = (dumps(obj) + "\n").encode()
    _atomic_replace(path, lambda fh: fh.write(data))


def write_history(path, records: list[dict]) -> None:
    data = "".join(dumps(r, indent=None) + "\n" for r in records).encode()
    _atomic_replace(path, lambda fh: fh.write(data))


def append_jsonl(path, record: dict) -> None:
    """Append one line to a JSON-lines log (opened in append mode: one ``write`` of a whole line,
    so concurrent appenders never interleave within a line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(dumps(record, indent=None) + "\n")


def write_checkpoint(path, state: dict) -> None:
    import torch

    _atomic_replace(path, lambda fh: torch.save(state, fh))


def read_json(path) -> dict | None:
    path = Path(path)
    if not path.is_file():
        return None
    with open(path) as fh:
        return json.load(fh)


def read_history(path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def run_status(directory) -> str:
    """``finished``, ``failed``, ``partial`` (checkpoint, no result) or ``new``."""
    directory = Path(directory)
    result = read_json(directory / RESULT)
    if result is not None:
        return result.get("status", "failed")
    if (directory / CHECKPOINT).is_file():
        return "partial"
    return "new"


def load_results(results_root, datasets=None, methods=None) -> list[dict]:
    """Every ``result.json`` below ``results_root`` (optionally filtered), each with its
    ``run`` name (``<method>[-<tag>]``) and ``path``."""
    root = Path(results_root)
    out = []
    if not root.is_dir():
        return out
    for path in sorted(root.glob(f"*/*/seed-*/{RESULT}")):
        try:
            rec = read_json(path)
        except (json.JSONDecodeError, OSError):
            continue
        if rec is None:
            continue
        if datasets and rec.get("dataset") not in datasets:
            continue
        run = path.parent.parent.name
        if methods and rec.get("method") not in methods and run not in methods:
            continue
        rec["run"] = run
        rec["path"] = str(path.parent)
        out.append(rec)
    return out
