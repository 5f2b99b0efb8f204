"""The four trackers: TensorBoard, Weights & Biases, MLflow and a CSV file.

Each tracker library is imported only when its tracker opens a run. Where each writes:

* ``tensorboard``: ``<results>/_tensorboard/<dataset>/<run>/seed-<n>`` (``tensorboard --logdir
  <results>/_tensorboard``: one TensorBoard run per seed, named like the record); a resumed run
  adds an event file to the same folder; a replaced record (``--rerun``) gets ``seed-<n>~2``.
* ``wandb``: offline unless ``WANDB_API_KEY`` (or ``WANDB_MODE``) is set, so it works with no
  network; files under ``<results>/_wandb`` (or ``WANDB_DIR``); project ``WANDB_PROJECT`` or
  ``mmbench``; run id kept in ``trackers.json`` and passed back with ``resume="allow"``.
  ``wandb sync <results>/_wandb/wandb/offline-run-*`` uploads offline runs later.
* ``mlflow``: ``MLFLOW_TRACKING_URI``, else a SQLite store inside the results directory,
  ``sqlite:///<results>/mlflow.db`` (MLflow 3 keeps its ``./mlruns`` file store in maintenance
  mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE`` is set; ``mlflow ui
  --backend-store-uri sqlite:///<results>/mlflow.db`` shows it); experiment
  ``MLFLOW_EXPERIMENT_NAME`` or ``mmbench``; run id kept in ``trackers.json``.
* ``csv``: ``<run folder>/metrics.csv``, one row per epoch and one column per scalar, rewritten
  whole from ``history.jsonl`` (so it always equals it).

Identity: W&B config and tags, MLflow tags (``mmbench.<field>``) and params (the resolved
settings), and a TensorBoard text summary carry the identity hash, method, dataset, seed and tag;
the W&B group and the MLflow tag ``mmbench.group`` are ``<dataset>/<run>/<identity hash>``,
which is one table row.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import re
import time
import uuid
from pathlib import Path

from mmbench.results import store


class Tracker:
    """One tracker run at a time: ``open`` (new, or resumed from the stored ids), ``log`` one
    step, ``flush``, ``summary`` (the finished record), ``close``."""

    name = ""
    full_history = False  # True: write_all(history) instead of log/flush (csv)

    def open(self, info, previous: dict | None) -> dict:
        raise NotImplementedError

    def ids(self) -> dict:
        return {}

    def log(self, step: int, values: dict[str, float]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def summary(self, record: dict) -> None:
        pass

    def close(self, status: str) -> None:
        pass


def selected_scalars(record: dict) -> dict[str, float]:
    """``selected/<rule>/<split>/<head>/<metric>`` and ``selected/<rule>/epoch`` of a finished
    record, for every rule it stores."""
    out = {}
    for rule, sel in (record.get("selection") or {}).items():
        if not isinstance(sel, dict):
            continue
        out[f"selected/{rule}/epoch"] = float(sel.get("epoch", -1))
        for split in ("val", "test"):
            for head, metrics in (sel.get(split) or {}).items():
                for metric, value in (metrics or {}).items():
                    if isinstance(value, (int, float)):
                        out[f"selected/{rule}/{split}/{head}/{metric}"] = float(value)
    return out


def _config_text(info) -> str:
    lines = [
        f"**{info.name}**",
        "",
        f"- identity hash: `{info.identity_hash}`",
        f"- method: {info.method}",
        f"- dataset: {info.dataset}",
        f"- seed: {info.seed}",
        f"- tag: {info.tag or '-'}",
        "",
    ]
    lines += [f"    {k} = {v}" for k, v in sorted(info.flat_config().items())]
    return "\n".join(lines)


# --------------------------------------------------------------------------- tensorboard
class TensorBoardTracker(Tracker):
    name = "tensorboard"

    def __init__(self, root: str | None = None):
        self.root = root
        self.writer = None
        self.logdir: Path | None = None

    def _base(self, info) -> Path:
        return Path(self.root) if self.root else info.results_root / "_tensorboard"

    def open(self, info, previous):
        from torch.utils.tensorboard import SummaryWriter

        if previous and previous.get("logdir"):
            logdir = info.results_root / previous["logdir"]
        else:
            logdir = self._base(info) / info.dataset / info.run / f"seed-{info.seed}"
            k = 1
            while logdir.exists() and any(logdir.iterdir()):
                k += 1
                logdir = logdir.with_name(f"seed-{info.seed}~{k}")
        self.logdir = logdir
        self.writer = SummaryWriter(log_dir=str(logdir))
        if previous is None:
            self.writer.add_text("run", _config_text(info), 0)
        self._root = info.results_root
        return self.ids()

    def ids(self):
        try:
            rel = str(self.logdir.relative_to(self._root))
        except ValueError:
            rel = str(self.logdir)
        return {"logdir": rel}

    def log(self, step, values):
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)

    def flush(self):
        self.writer.flush()

    def summary(self, record):
        rule = record.get("reported_rule", "val")
        sel = (record.get("selection") or {}).get(rule)
        if sel:
            text = json.dumps({"rule": rule, "epoch": sel.get("epoch"), "test": sel.get("test")}, indent=1)
            self.writer.add_text("result", f"    {text}".replace("\n", "\n    "), int(sel.get("epoch", 0)))

    def close(self, status):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# --------------------------------------------------------------------------- wandb
class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self, mode: str | None = None, directory: str | None = None, project: str | None = None):
        self.mode = mode
        self.directory = directory
        self.project = project
        self.run = None
        self.run_id = None

    @staticmethod
    def default_mode() -> str:
        """``WANDB_MODE`` when set, else online only with an API key: offline needs no network."""
        if os.environ.get("WANDB_MODE"):
            return os.environ["WANDB_MODE"]
        return "online" if os.environ.get("WANDB_API_KEY") else "offline"

    def open(self, info, previous):
        import wandb

        self.run_id = (previous or {}).get("run_id") or uuid.uuid4().hex[:12]
        directory = Path(self.directory or os.environ.get("WANDB_DIR") or info.results_root / "_wandb")
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "identity_hash": info.identity_hash,
            "dataset": info.dataset,
            "method": info.method,
            "run": info.run,
            "tag": info.tag,
            "seed": info.seed,
            **info.config,
        }
        tags = [info.dataset, info.method, f"cfg-{info.identity_hash}"] + (
            [f"tag-{info.tag}"] if info.tag else []
        )
        self.run = wandb.init(
            project=self.project or os.environ.get("WANDB_PROJECT") or "mmbench",
            id=self.run_id,
            resume="allow",
            mode=self.mode or self.default_mode(),
            dir=str(directory),
            name=info.name,
            group=info.group,
            job_type="train",
            tags=[t[:64] for t in tags],
            config=config,
            reinit="create_new",
            settings=wandb.Settings(
                console="off",
                silent=True,
                x_disable_stats=True,
                save_code=False,
                disable_git=True,
                x_disable_meta=True,
            ),
        )
        return self.ids()

    def ids(self):
        return {"run_id": self.run_id}

    def log(self, step, values):
        self.run.log(values, step=step)

    def summary(self, record):
        self.run.summary.update(selected_scalars(record))

    def close(self, status):
        if self.run is not None:
            self.run.finish(exit_code=0 if status == "finished" else 1)
            self.run = None


# --------------------------------------------------------------------------- mlflow
_MLFLOW_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")
_MLFLOW_STATUS = {"finished": "FINISHED", "failed": "FAILED"}


@contextlib.contextmanager
def _sqlite_lock(uri: str):
    """An exclusive ``flock`` on ``<db>.lock`` beside a ``sqlite:///`` store while it is opened:
    two processes opening a new store at once both run its table migrations and one fails
    ("duplicate column name"); two creating the experiment at once collide the same way."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    lock = Path(uri[len("sqlite:///") :] + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.client = None
        self.run_id = None

    @staticmethod
    def default_uri(results_root: Path) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(results_root).resolve()}/mlflow.db"

    def open(self, info, previous):
        from mlflow import MlflowClient
        from mlflow.entities import Param

        # its SQLite store announces creating and migrating its tables at INFO on stderr
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        previous = previous or {}
        self.tracking_uri = (
            previous.get("tracking_uri") or self.tracking_uri or self.default_uri(info.results_root)
        )
        with _sqlite_lock(self.tracking_uri):  # pool workers: one creates the tables, one the experiment
            self.client = MlflowClient(tracking_uri=self.tracking_uri)
            if previous.get("run_id"):
                self.run_id = previous["run_id"]
                self.client.update_run(self.run_id, status="RUNNING")
                return self.ids()
            name = self.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "mmbench"
            exp = self.client.get_experiment_by_name(name)
            if exp is not None:
                exp_id = exp.experiment_id
            else:
                where = None
                if self.tracking_uri.startswith("sqlite:"):
                    where = (Path(info.results_root).resolve() / "mlartifacts").as_uri()
                exp_id = self.client.create_experiment(name, artifact_location=where)
        tags = {f"mmbench.{k}": v for k, v in info.tags().items()}
        tags["mmbench.group"] = info.group
        run = self.client.create_run(exp_id, run_name=info.name, tags=tags)
        self.run_id = run.info.run_id
        params = [Param(k[:250], v[:6000]) for k, v in info.flat_config().items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i : i + 100])
        return self.ids()

    def ids(self):
        return {"run_id": self.run_id, "tracking_uri": self.tracking_uri}

    def _metrics(self, values, step):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        return [Metric(_MLFLOW_KEY.sub("_", k)[:250], v, now, step) for k, v in values.items()]

    def log(self, step, values):
        metrics = self._metrics(values, step)
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def summary(self, record):
        metrics = self._metrics(selected_scalars(record), 0)
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def close(self, status):
        if self.client is not None and self.run_id is not None:
            self.client.set_terminated(self.run_id, _MLFLOW_STATUS.get(status, "KILLED"))


# --------------------------------------------------------------------------- csv
class CsvTracker(Tracker):
    """``metrics.csv`` in the run folder: ``epoch`` then one column per scalar (first-seen order),
    written whole from the history each time (atomically)."""

    name = "csv"
    full_history = True
    FILE = "metrics.csv"

    def open(self, info, previous):
        self.path = info.run_dir / self.FILE
        return {"file": self.FILE}

    def ids(self):
        return {"file": self.FILE}

    def write_all(self, history):
        from mmbench.trackers.replay import scalars

        rows = [{"epoch": line["epoch"], **scalars(line)} for line in history]
        columns = list(dict.fromkeys(k for row in rows for k in row))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        data = buf.getvalue().encode()
        store._atomic_replace(self.path, lambda fh: fh.write(data))


TRACKERS = {
    "tensorboard": TensorBoardTracker,
    "wandb": WandbTracker,
    "mlflow": MlflowTracker,
    "csv": CsvTracker,
}


def make_tracker(name: str, **options) -> Tracker:
    return TRACKERS[name](**options)
