"""The one results store: run directories, atomic writes, loading run records.

Layout (docs/records.md)::

    <results>/<dataset>/<method>[-<tag>]/seed-<n>/
        config.json     resolved config + identity + versions + device (written once)
        runlog.jsonl    one line per start or resume: time, host, device, threads, versions, git
        history.jsonl   one line per finished epoch
        result.json     final metrics under each selection rule, or status "failed"
        last.ckpt       model, optimisers, method state, RNG state (for resume)
        best.ckpt       model and method state at the epochs the val and test-best rules select
        .lock           advisory lock of the process training the seed (runstate.seed_lock)
        probe.json      linear probes and imbalance scores (``mmbench probe``; never the record)

Every write goes to a temporary file in the same directory and is renamed into place, so a
killed process never leaves a half-written record. ``mkstemp`` creates that file with mode 0600;
it is given ``0o666 & ~umask`` before the rename, so records on a shared results disk are as
readable by the group as any file the user creates there.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mmbench.results import record_schema
from mmbench.results.errors import ConfigError, DiskError, MMBenchError

RESULT = "result.json"
CONFIG = "config.json"
HISTORY = "history.jsonl"
CHECKPOINT = "last.ckpt"
RUNLOG = "runlog.jsonl"
BEST = "best.ckpt"  # weights at the epochs the val and test-best rules select
PROBE = "probe.json"  # linear probes and imbalance scores of the val-selected weights (mmbench probe)
SCHEMA_VERSION = 2  # result.json schema (docs/records.md)


def default_results_root() -> Path:
    return Path(os.environ.get("MMBENCH_RESULTS", "results"))


def run_dir(results_root, dataset: str, run_name: str, seed: int) -> Path:
    """The seed folder; refused (``ConfigError``) unless it is exactly three levels under the root."""
    path = Path(results_root) / dataset / run_name / f"seed-{seed}"
    if any(part in ("", ".", "..") or "/" in part or "\x00" in part for part in (dataset, run_name, f"seed-{seed}")):
        raise ConfigError(f"{path} is not a folder three levels under the results root {results_root}; "
                          "use a plain --tag (letters, digits, . _ + = -)")
    return path


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


def _disk_fault(exc: BaseException) -> bool:
    """An ``OSError``, or the ``RuntimeError`` torch.save raises when its write fails."""
    return isinstance(exc, OSError) or (
        isinstance(exc, RuntimeError) and any(s in str(exc) for s in ("inline_container", "PytorchStreamWriter"))
    )


def _atomic_replace(path: Path, write) -> None:
    """Write ``path`` through a temporary file renamed into place; a disk fault is one
    ``DiskError`` naming the path (the old file, if any, is left as it was)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if _disk_fault(exc):
            raise DiskError.of(path, exc) from None
        raise


def check_writable(directory) -> None:
    """Create ``directory`` and write (then remove) a small file in it: a read-only or full disk,
    a path that is a file or a name too long is one ``DiskError`` before any training starts."""
    directory = Path(directory)
    probe = directory / f".write-probe-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"0" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise DiskError.of(probe if directory.is_dir() else directory, exc, "create") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def write_text(path, text: str) -> None:
    """A user-named output file (``--out``): written atomically; a disk fault is one ``DiskError``."""
    data = text.encode("utf-8")
    _atomic_replace(Path(path), lambda fh: fh.write(data))


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(dumps(record, indent=None) + "\n")
    except OSError as exc:
        raise DiskError.of(path, exc) from None


def write_checkpoint(path, state: dict) -> None:
    import torch

    _atomic_replace(path, lambda fh: torch.save(state, fh))


class RecordInvalid(MMBenchError, ValueError):
    """A record file that parses but does not match its schema (``record_schema``); the message
    names the file, the first bad field and what to do (one line in the CLI)."""


def schema_problems(path, obj) -> list[str]:
    """The schema problems of ``obj`` read from ``path`` (by file name: ``result.json``,
    ``config.json``, ``probe.json``, ``study.json``; other files are not checked)."""
    check = record_schema.CHECKS.get(Path(path).name)
    if check is None or Path(path).name == HISTORY:
        return []
    return check(obj)


def read_json(path) -> dict | None:
    """The JSON file at ``path`` (None when absent). A record file (``record_schema.CHECKS``) is
    checked against its schema: ``RecordInvalid`` names the first bad field."""
    path = Path(path)
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        obj = json.load(fh)
    problems = schema_problems(path, obj)
    if problems:
        raise RecordInvalid(f"{path}: field {record_schema.first_problem(problems)}; {_fix_hint(path)}")
    return obj


def read_history(path) -> list[dict]:
    """The epochs of a ``history.jsonl`` (each line checked: ``RecordInvalid`` names the line)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if line.strip():
                item = json.loads(line)
                problems = record_schema.check_history_line(item)
                if problems:
                    raise RecordInvalid(f"{path} line {i}: field {record_schema.first_problem(problems)}; "
                                        f"{_fix_hint(path)}")
                out.append(item)
    return out


def run_status(directory) -> str:
    """``finished``, ``failed``, ``partial`` (checkpoint, no result), ``new``, or ``unreadable``
    (a ``result.json`` that is not a readable record; ``read_record`` says why)."""
    directory = Path(directory)
    result, problem = read_record(directory)
    if problem is not None:
        return "unreadable"
    if result is not None:
        return result.get("status", "failed")
    if (directory / CHECKPOINT).is_file():
        return "partial"
    return "new"


# --------------------------------------------------------------------------- safe readers
@dataclass(frozen=True)
class RecordProblem:
    """A run directory a reader could not use as it is: ``kind`` is ``unreadable`` (a file that
    does not parse or lacks the record's fields) or ``partial`` (a checkpoint and no result)."""

    path: str  # the file (unreadable) or the seed directory (partial)
    kind: str
    message: str

    def line(self) -> str:
        return f"{self.kind} {self.path}: {self.message}"


def _fix_hint(path: Path) -> str:
    return f"restore it, or delete {path.parent} and train that seed again"


def read_record(directory) -> tuple[dict | None, RecordProblem | None]:
    """``(record, None)``, ``(None, None)`` when the seed has no ``result.json`` yet, or
    ``(None, RecordProblem)`` when the file exists but is not a readable record (bad JSON, wrong
    encoding, missing fields): never an exception."""
    path = Path(directory) / RESULT
    if not path.is_file():
        return None, None
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, RecordProblem(str(path), "unreadable", f"not valid JSON ({_short(exc)}); {_fix_hint(path)}")
    if not isinstance(rec, dict):
        return None, RecordProblem(str(path), "unreadable", f"not a JSON object; {_fix_hint(path)}")
    problems = record_schema.check_result(rec)
    if problems:
        return None, RecordProblem(str(path), "unreadable", f"field {record_schema.first_problem(problems)}; {_fix_hint(path)}")
    return rec, None


def read_json_checked(path) -> tuple[dict | None, RecordProblem | None]:
    """A JSON object file (e.g. ``config.json``): ``(obj, None)``, ``(None, None)`` when absent,
    ``(None, RecordProblem)`` when unreadable."""
    path = Path(path)
    if not path.is_file():
        return None, None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, RecordProblem(str(path), "unreadable", f"not valid JSON ({_short(exc)}); {_fix_hint(path)}")
    if not isinstance(obj, dict):
        return None, RecordProblem(str(path), "unreadable", f"not a JSON object; {_fix_hint(path)}")
    problems = schema_problems(path, obj)
    if problems:
        return None, RecordProblem(str(path), "unreadable", f"field {record_schema.first_problem(problems)}; {_fix_hint(path)}")
    return obj, None


def read_history_checked(path) -> tuple[list[dict], RecordProblem | None]:
    """The epochs of a ``history.jsonl``; on a damaged line, the epochs before it and a RecordProblem
    naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        return [], None
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return [], RecordProblem(str(path), "unreadable", f"{_short(exc)}; {_fix_hint(path)}")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            item, err = None, _short(exc)
        else:
            err = None if isinstance(item, dict) else "not a JSON object"
            if err is None and (problems := record_schema.check_history_line(item)):
                err = f"field {record_schema.first_problem(problems)}"
        if err:
            return out, RecordProblem(str(path), "unreadable", f"line {i}: {err}; {_fix_hint(path)}")
        out.append(item)
    return out, None


def _short(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:120]


@dataclass
class RecordScan:
    """What ``scan_results`` found: readable records and the seed directories it could not use."""

    records: list[dict] = field(default_factory=list)
    problems: list[RecordProblem] = field(default_factory=list)


def _wanted(dataset: str, method: str | None, run: str, datasets, methods) -> bool:
    if datasets and dataset not in datasets:
        return False
    return not methods or method in methods or run in methods


# the run folders of tuning trials (``<run>-tune-<label>-tNNNN``, mmbench/tuning): hidden from
# every reader unless it asks for them (``include_tuning``)
TRIAL_RUN = re.compile(r"-tune-[A-Za-z0-9_.]+-t\d{4}$")


def scan_results(results_root, datasets=None, methods=None, include_tuning: bool = False) -> RecordScan:
    """Every seed directory below ``results_root`` (optionally filtered by dataset and by method
    or run name): each readable ``result.json`` as a record (with its ``run`` name
    ``<method>[-<tag>]`` and ``path``), and a ``RecordProblem`` for each unreadable record and each
    partial seed (checkpoint, no result). Nothing is dropped silently."""
    root = Path(results_root)
    scan = RecordScan()
    if not root.is_dir():
        return scan
    for seed_dir in sorted(p for p in root.glob("*/*/seed-*") if p.is_dir()):
        dataset, run = seed_dir.parent.parent.name, seed_dir.parent.name
        if not include_tuning and TRIAL_RUN.search(run):
            continue
        rec, problem = read_record(seed_dir)
        if problem is not None:
            if _wanted(dataset, run.split("-")[0], run, datasets, methods):
                scan.problems.append(problem)
            continue
        if rec is None:
            if (seed_dir / CHECKPOINT).is_file() and _wanted(dataset, run.split("-")[0], run, datasets, methods):
                scan.problems.append(RecordProblem(str(seed_dir), "partial", "checkpoint but no result yet: "
                                             "rerun the command that trained it to finish it"))
            continue
        if not _wanted(rec["dataset"], rec["method"], run, datasets, methods):
            continue
        rec["run"] = run
        rec["path"] = str(seed_dir)
        scan.records.append(rec)
    return scan


def load_results(results_root, datasets=None, methods=None, include_tuning: bool = False) -> list[dict]:
    """The readable records of ``scan_results`` (readers that must report damaged or partial
    seeds use ``scan_results``)."""
    return scan_results(results_root, datasets, methods, include_tuning).records
