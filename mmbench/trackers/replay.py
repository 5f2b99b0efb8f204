"""Replaying a run's ``history.jsonl`` into experiment trackers: the one path both live logging
(``live.py``, after every epoch) and ``mmbench sync`` (after the fact) take.

A tracker is a *reader* of the record stream: it never sees the trainer's objects, only the
lines the harness has already written (``store.read_history_checked``) and the run's
``config.json`` (identity hash, method, dataset, seed, tag, resolved settings). What each tracker
has received is kept beside the record in ``trackers.json``::

    {"wandb": {"run_id": "k3j2...", "epochs": 3, "digest": "<sha256 of those 3 lines>"},
     "mlflow": {"run_id": "...", "tracking_uri": "sqlite:///.../mlflow.db", "epochs": 3, ...},
     "tensorboard": {"logdir": "_tensorboard/mfeat/joint/seed-0", "epochs": 3, ...}}

so a resumed run continues the same tracker run (W&B ``resume``, the MLflow run id, the same
TensorBoard folder) from the first epoch it has not seen, and never logs a step twice. When the
history no longer starts with the lines a tracker received (``--rerun`` replaced the record),
a new tracker run is started. A replay with nothing new opens nothing: ``sync`` is idempotent.

Each epoch becomes one step (``step = epoch``, 0-based as in the history) with the scalars of
``scalars(line)``: ``train/<loss>`` (every mean the method's training step returned),
``val|test/<head>/<metric>``, ``diagnostics/<key>[/<sub>]`` (numeric leaves), ``lr/<group>``
and ``time/train_s|eval_s``. Non-finite values (stored as null) are left out.

A tracker that raises (server down, disk full, a bad key) is reported once through ``warn`` and
dropped for the rest of the replay; the record and the training are never affected.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from mmbench.results import store
from mmbench.trackers.names import logger_names

STATE = "trackers.json"  # beside the record; not part of it (docs/records.md)


# --------------------------------------------------------------------------- what is logged
def _leaves(prefix: str, value, out: dict) -> None:
    if isinstance(value, bool):
        out[prefix] = float(value)
    elif isinstance(value, (int, float)):
        if math.isfinite(value):
            out[prefix] = float(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _leaves(f"{prefix}/{k}", v, out)
    elif isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
        for i, v in enumerate(value):
            _leaves(f"{prefix}/{i}", v, out)


def scalars(line: dict) -> dict[str, float]:
    """The scalars of one ``history.jsonl`` line, by slash-separated key (see the module doc)."""
    out: dict[str, float] = {}
    for section in ("train", "val", "test", "diagnostics", "lr", "time"):
        value = line.get(section)
        if isinstance(value, dict):
            for k, v in value.items():
                _leaves(f"{section}/{k}", v, out)
    return out


def digest(lines: list[dict]) -> str:
    text = json.dumps(lines, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class RunInfo:
    """Who a run is, for a tracker's config, tags and grouping (from ``config.json``)."""

    run_dir: Path
    results_root: Path
    dataset: str
    method: str
    run: str  # <method>[-<tag>], the table's row name
    tag: str | None
    seed: int
    identity_hash: str | None
    config: dict  # the resolved config (RunConfig.to_dict() minus provenance)

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.run}/seed-{self.seed}"

    @property
    def group(self) -> str:
        """One table row: the run name and its identity hash (seeds of one hash are one row)."""
        return f"{self.dataset}/{self.run}/{self.identity_hash or 'nohash'}"

    def tags(self) -> dict[str, str]:
        return {
            "identity_hash": self.identity_hash or "",
            "dataset": self.dataset,
            "method": self.method,
            "run": self.run,
            "tag": self.tag or "",
            "seed": str(self.seed),
            "protocol": str(self.config.get("protocol", "")),
        }

    def flat_config(self) -> dict[str, str]:
        """Settings as ``section.key`` -> JSON text (MLflow params, TensorBoard text)."""
        out = {}
        for section in ("train", "data", "method_params"):
            for k, v in (self.config.get(section) or {}).items():
                name = "method" if section == "method_params" else section
                out[f"{name}.{k}"] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        for k in ("protocol", "select_tie"):
            if k in self.config:
                out[k] = str(self.config[k])
        return out


def run_info(run_dir) -> RunInfo:
    """``RunInfo`` from the run's ``config.json`` (raises ``ValueError`` naming the file when
    it is missing or damaged)."""
    run_dir = Path(run_dir)
    cfg, problem = store.read_json_checked(run_dir / store.CONFIG)
    if cfg is None:
        raise ValueError(problem.line() if problem else f"{run_dir / store.CONFIG} is missing")
    config = {
        k: cfg.get(k)
        for k in (
            "dataset",
            "method",
            "seed",
            "protocol",
            "select_tie",
            "tag",
            "train",
            "data",
            "method_params",
        )
    }
    return RunInfo(
        run_dir=run_dir,
        results_root=run_dir.parent.parent.parent,
        dataset=cfg["dataset"],
        method=cfg["method"],
        run=run_dir.parent.name,
        tag=cfg.get("tag"),
        seed=int(cfg["seed"]),
        identity_hash=(cfg.get("identity") or {}).get("hash"),
        config=config,
    )


def read_state(run_dir) -> dict:
    state, _ = store.read_json_checked(Path(run_dir) / STATE)
    return state or {}


def stderr_warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the replayer
class Replayer:
    """The trackers of one run: ``catch_up()`` logs the history lines each has not received,
    ``close(status)`` ends their tracker runs. Not thread-safe: one thread drives it."""

    def __init__(self, run_dir, names, warn=stderr_warn, options: dict | None = None):
        from mmbench.trackers.backends import make_tracker

        self.run_dir = Path(run_dir)
        self.names = logger_names(names)
        self.warn = warn
        self.trackers = {n: make_tracker(n, **(options or {}).get(n, {})) for n in self.names}
        self.opened: set[str] = set()
        self.failed: dict[str, str] = {}
        self.logged = 0  # epochs logged by this replayer, over all trackers
        self._info: RunInfo | None = None

    def info(self) -> RunInfo:
        if self._info is None:
            self._info = run_info(self.run_dir)
        return self._info

    def _fail(self, name: str, exc: BaseException) -> None:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        self.failed[name] = f"{type(exc).__name__}: {text}"
        self.warn(
            f"warning: the {name} logger failed ({self.failed[name]}) for {self.run_dir}; training goes on "
            f"without it, and `mmbench sync --logger {name}` replays the record into it later"
        )
        tracker = self.trackers.get(name)
        if name in self.opened and tracker is not None:
            try:
                tracker.close("failed")
            except Exception:  # noqa: BLE001, S110 - already reported; a second error says nothing new
                pass
        self.opened.discard(name)

    def catch_up(self) -> int:
        """Log every history line each working tracker has not received; returns the number of
        (tracker, epoch) steps logged."""
        history, _ = store.read_history_checked(self.run_dir / store.HISTORY)  # a damaged tail: up to it
        state = read_state(self.run_dir)
        logged = 0
        for name, tracker in self.trackers.items():
            if name in self.failed:
                continue
            try:
                logged += self._catch_up_one(name, tracker, history, state)
            except Exception as exc:  # noqa: BLE001 - a tracker never fails the run
                self._fail(name, exc)
        self.logged += logged
        return logged

    def _catch_up_one(self, name, tracker, history: list[dict], state: dict) -> int:
        prev = state.get(name)
        done = 0
        if isinstance(prev, dict):
            n = int(prev.get("epochs", 0))
            if n <= len(history) and digest(history[:n]) == prev.get("digest"):
                done = n
            else:  # the record was replaced (--rerun): a new tracker run
                prev = None
        new = history[done:]
        if not new and prev is not None:
            return 0
        if name not in self.opened:
            ids = tracker.open(self.info(), prev)
            self.opened.add(name)
        else:
            ids = tracker.ids()
        if tracker.full_history:
            tracker.write_all(history)
        else:
            for line in new:
                tracker.log(int(line["epoch"]), scalars(line))
            tracker.flush()
        state = read_state(self.run_dir)  # re-read: another tracker of this replayer may have written it
        state[name] = {**ids, "epochs": len(history), "digest": digest(history)}
        store.write_json(self.run_dir / STATE, state)
        return len(new)

    def close(self, status: str = "finished") -> None:
        """End each opened tracker run (``finished``, ``failed`` or ``interrupted``); with the
        run's ``result.json`` when it is finished (the selected epochs as a summary)."""
        record = None
        if status == "finished":
            record, _ = store.read_record(self.run_dir)
        for name in list(self.opened):
            try:
                if record is not None:
                    self.trackers[name].summary(record)
                self.trackers[name].close(status)
            except Exception as exc:  # noqa: BLE001
                self._fail(name, exc)
        self.opened.clear()
