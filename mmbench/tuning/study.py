"""Studies: the frozen spec (``study.json``), the Optuna ledger (storage, sampler) and the
trial lock.

A study is one (dataset, method[, modality]) under one label L. Its spec (space, sampler,
study seed, folds K, repeats R, metric, fixed ``--set`` overrides, protocol, epochs and the
method's and dataset's component versions) is hashed like a run identity
(``identity.hash_identity``) and written once to ``<results>/_tune/L/<dataset>/<run>/study.json``;
a later command with the same label and another spec is refused with the differing keys. Only
``--trials`` may grow (the plan keeps every earlier index).

Optuna (>= 5) is the ledger and sampler through ask/tell: ``PlanSampler`` returns the planned
parameters of ``trial.number``, so trial numbers are plan indices. The default storage is
``JournalStorage(JournalFileBackend(<results>/_tune/optuna.journal))`` (no server; a shared
filesystem serves several machines); PostgreSQL/MySQL URLs go to ``RDBStorage``; SQLite is
refused for more than one worker (Optuna FAQ "How can I solve the error that occurs when
performing parallel optimization with SQLite3?"). The storage is opened and queried before any
training, and a password never appears in a message or a file (``redact``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from mmbench.benchmark.identity import differing_keys, hash_identity
from mmbench.results import store
from mmbench.results.errors import ConfigError
from mmbench.tuning import plan as plan_mod
from mmbench.tuning.space import Dim

TUNE_DIR = "_tune"
JOURNAL = "optuna.journal"
STUDY_FILE = "study.json"
METRICS = ("acc", "map", "f1")
TRIAL_SEED_START = 1000
OPTUNA_HINT = "error: mmbench tune needs optuna: pip install -e '.[tune]'"


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("mmbench tune needs optuna: pip install -e '.[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def redact(url: str) -> str:
    """``scheme://user:***@host/...``: the password of a storage URL hidden."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", str(url))


# --------------------------------------------------------------------------- naming
def run_base(method: str, fixed: dict) -> str:
    """The run name's front: the method, and the values of its ``tag_keys`` when fixed
    (``unimodal-fourier``)."""
    from mmbench.benchmark.config import _slug
    from mmbench.benchmark.registry import get_method

    keys = getattr(get_method(method), "tag_keys", ())
    parts = [_slug(fixed[f"method.{k}"]) for k in keys if f"method.{k}" in fixed]
    return "-".join([method, *parts])


def trial_tag(base: str, method: str, label: str, index: int) -> str:
    front = base[len(method) + 1 :] if base != method else ""
    return (f"{front}-" if front else "") + f"tune-{label}-t{index:04d}"


def final_tag(base: str, method: str, label: str) -> str:
    front = base[len(method) + 1 :] if base != method else ""
    return (f"{front}-" if front else "") + f"tuned-{label}"


# --------------------------------------------------------------------------- the study
@dataclass
class Study:
    label: str
    dataset: str
    method: str
    base: str  # run name front (method[-modality])
    dims: list[Dim]
    anchor: dict
    sampler: str
    study_seed: int
    folds: int
    repeats: int
    metric: str
    fixed: dict
    trials: int
    components: dict = field(default_factory=dict)
    epochs: int = 0
    protocol: str = "shared"
    plan: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.label}:{self.dataset}:{self.base}"

    def folder(self, results) -> Path:
        return Path(results) / TUNE_DIR / self.label / self.dataset / self.base

    def spec(self) -> dict:
        """Everything that defines the study except N (which may grow)."""
        return {
            "dataset": self.dataset,
            "method": self.method,
            "run": self.base,
            "space": [{k: v for k, v in d.to_dict().items() if k != "origin"} for d in self.dims],
            "sampler": self.sampler,
            "study_seed": self.study_seed,
            "folds": self.folds,
            "repeats": self.repeats,
            "metric": self.metric,
            "fixed": dict(sorted(self.fixed.items())),
            "protocol": self.protocol,
            "epochs": self.epochs,
            "anchor": self.anchor,
            "components": self.components,
        }

    @property
    def study_hash(self) -> str:
        return hash_identity(self.spec())

    @property
    def space_hash(self) -> str:
        return hash_identity(self.spec()["space"])

    def n_folds(self) -> int:
        return self.folds * self.repeats

    def n_planned(self) -> int:
        """The anchor plus N (for ``tpe`` too, whose parameters are asked live)."""
        return self.trials + 1

    def sync_adaptive_plan(self, study) -> None:
        """``tpe``: the plan rows are the parameters the sampler gave each trial so far (row 0 the
        enqueued anchor); planned samplers: nothing to do."""
        if self.sampler != "tpe":
            return
        rows = [dict(self.anchor)] + [None] * self.trials
        for t in study.get_trials(deepcopy=False):
            if t.number < len(rows) and t.params:
                rows[t.number] = dict(t.params)
        self.plan = rows

    def trial_overrides(self, index: int, keep_checkpoints: bool = False) -> dict:
        return {
            **self.fixed,
            **self.plan[index],
            "data.cv_folds": self.folds,
            "train.eval_test": False,
            "train.keep_checkpoints": keep_checkpoints,
        }

    def trial_tag(self, index: int) -> str:
        return trial_tag(self.base, self.method, self.label, index)

    def distributions(self) -> dict:
        import optuna.distributions as od

        out = {}
        for d in self.dims:
            if d.kind == "categorical":
                out[d.key] = od.CategoricalDistribution(list(d.choices))
            elif d.kind == "int":
                out[d.key] = od.IntDistribution(int(d.low), int(d.high), log=d.log)
            else:
                out[d.key] = od.FloatDistribution(d.low, d.high, log=d.log)
        return out


def build_study(
    label, dataset, method, fixed, dims, anchor, sampler, study_seed, folds, repeats, metric, trials
) -> Study:
    from mmbench.benchmark.config import resolve_config
    from mmbench.benchmark.identity import component_info

    cfg = resolve_config(dataset, method, fixed)
    if sampler == "grid":
        size = plan_mod.grid_size(dims) if all(d.kind == "categorical" for d in dims) else 0
        if not size:
            raise ConfigError("--sampler grid needs every dimension categorical (choices = [...])")
        if trials != size:
            raise ConfigError(
                f"--sampler grid: the grid of {method} on {dataset} has {size} points; pass --trials {size}"
            )
    st = Study(
        label,
        dataset,
        method,
        run_base(method, fixed),
        dims,
        anchor,
        sampler,
        study_seed,
        folds,
        repeats,
        metric,
        dict(fixed),
        trials,
        {"method": component_info("method", method), "dataset": component_info("dataset", dataset)},
        cfg.train.epochs,
        cfg.protocol,
    )
    st.plan = make_plan(st)
    return st


def make_plan(st: Study) -> list[dict]:
    if st.sampler == "tpe":
        return [dict(st.anchor)]  # trials beyond the anchor are sampled live
    return plan_mod.make_plan(st.dims, st.sampler, st.study_seed, st.trials, st.anchor)


def default_label(common: dict) -> str:
    return hash_identity(common)[:8]


# --------------------------------------------------------------------------- study.json
def read_study_json(st: Study, results) -> dict | None:
    path = st.folder(results) / STUDY_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is unreadable ({exc}): move it away, or use --study NEW") from None


def check_frozen(st: Study, results) -> dict | None:
    """Refuse another spec under an existing label (the differing keys); an existing study with
    more trials keeps its N. Returns the stored study.json (None when new)."""
    old = read_study_json(st, results)
    if old is None:
        return None
    if old.get("study_hash") != st.study_hash:
        keys = differing_keys(old.get("spec", {}), st.spec())
        raise ConfigError(
            f"study {st.name} exists with another spec (differs in {', '.join(keys) or 'its hash'}): "
            "a changed spec is a new study: use --study NEW"
        )
    if int(old.get("trials", 0)) > st.trials:
        st.trials = int(old["trials"])
        st.plan = make_plan(st)
    return old


def write_study_json(st: Study, results, storage_display: str, optuna_version: str, old: dict | None) -> None:
    """``study.json``, written once (rewritten only when ``--trials`` grows)."""
    if old is not None and int(old.get("trials", 0)) == st.trials:
        return
    store.write_json(
        st.folder(results) / STUDY_FILE,
        {
            "schema": 1,
            "label": st.label,
            "study": st.name,
            "study_hash": st.study_hash,
            "space_hash": st.space_hash,
            "spec": st.spec(),
            "trials": st.trials,
            "plan": st.plan,
            "trial_seeds": list(range(TRIAL_SEED_START, TRIAL_SEED_START + st.n_folds())),
            "storage": storage_display,
            "optuna_version": optuna_version,
        },
    )


def load_study_json(results, label: str, dataset: str, base: str) -> dict | None:
    path = Path(results) / TUNE_DIR / label / dataset / base / STUDY_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def study_from_json(doc: dict) -> Study:
    spec = doc["spec"]
    st = Study(
        doc["label"],
        spec["dataset"],
        spec["method"],
        spec["run"],
        [Dim.from_dict(d) for d in spec["space"]],
        spec["anchor"],
        spec["sampler"],
        spec["study_seed"],
        spec["folds"],
        spec["repeats"],
        spec["metric"],
        spec["fixed"],
        doc["trials"],
        spec["components"],
        spec["epochs"],
        spec["protocol"],
    )
    st.plan = doc["plan"]
    return st


def list_studies(results) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((Path(results) / TUNE_DIR).glob(f"*/*/*/{STUDY_FILE}"))]


# --------------------------------------------------------------------------- storage
@dataclass
class Storage:
    url: str  # as given (or the default journal path)
    display: str  # redacted
    kind: str  # journal | rdb
    journal_lock: str = "symlink"

    def open(self):
        """The Optuna storage object (raises one ``ConfigError`` line)."""
        optuna = require_optuna()
        try:
            if self.kind == "journal":
                from optuna.storages import JournalStorage
                from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

                path = str(self.url)
                lock = JournalFileOpenLock(path) if self.journal_lock == "open" else None
                storage = JournalStorage(JournalFileBackend(path, lock_obj=lock))
            else:
                storage = optuna.storages.RDBStorage(self.url)
        except Exception as exc:  # noqa: BLE001 - driver missing, server refused, file unreadable
            if self.kind == "journal" and Path(self.url).is_file():
                raise ConfigError(self.damaged(exc)) from None
            raise ConfigError(
                f"cannot open the tuning storage {self.display!r}: {_short(exc)}; "
                "the default journal file needs no server"
            ) from None
        try:
            storage.get_all_studies()
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(self.damaged(exc)) from None
        return storage

    def damaged(self, exc) -> str:
        return (
            f"the tuning ledger {self.display} is damaged: {_short(exc)}; "
            "mmbench tune --rebuild-ledger rebuilds it from the run records"
        )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {redact(text[0]) if text else ''}"


def parse_storage(value: str | None, results, workers: int, journal_lock: str = "symlink") -> Storage:
    """``--storage``: None (the default journal), a file path (a journal), a PostgreSQL / MySQL
    URL, or ``sqlite:///`` for one worker."""
    if value is None:
        path = Path(results) / TUNE_DIR / JOURNAL
        return Storage(str(path), str(path), "journal", journal_lock)
    shown = redact(value)
    if "://" in value:
        scheme = value.split("://", 1)[0].split("+", 1)[0].lower()
        if scheme == "sqlite":
            if workers > 1:
                raise ConfigError(
                    "SQLite cannot serve parallel workers (Optuna FAQ); use the default journal "
                    "file or PostgreSQL"
                )
            return Storage(value, shown, "rdb")
        if scheme in ("postgresql", "mysql"):
            return Storage(value, shown, "rdb")
        raise ConfigError(
            f"cannot open the tuning storage {shown!r}: unknown scheme {scheme!r}; give a journal "
            "file path, postgresql://..., mysql://... or sqlite:///... (one worker)"
        )
    if Path(value).is_dir():
        raise ConfigError(
            f"cannot open the tuning storage {shown!r}: it is a directory; give a journal file path"
        )
    return Storage(value, shown, "journal", journal_lock)


def plan_sampler(st: Study, optuna):
    """An Optuna sampler returning ``st.plan[trial.number]`` (the anchor's values beyond the
    plan: the worker marks such a trial as overflow and fails it); ``tpe``: Optuna's
    ``TPESampler(seed=study_seed)`` (adaptive)."""
    if st.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=st.study_seed)

    class PlanSampler(optuna.samplers.BaseSampler):
        def infer_relative_search_space(self, study, trial):
            return {}

        def sample_relative(self, study, trial, search_space):
            return {}

        def sample_independent(self, study, trial, param_name, param_distribution):
            row = st.plan[trial.number] if trial.number < len(st.plan) else st.plan[0]
            return row[param_name]

    return PlanSampler()


def open_optuna_study(st: Study, storage, optuna, where: str = "in the results directory"):
    """Create or load the Optuna study of ``st`` (a journal that cannot be replayed: one line)."""
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=st.name,
            direction="maximize",
            sampler=plan_sampler(st, optuna),
            load_if_exists=True,
        )
    except (ValueError, KeyError, TypeError, OSError) as exc:  # json.JSONDecodeError is a ValueError
        raise ConfigError(
            f"the tuning ledger {where} is damaged: {_short(exc)}; "
            "mmbench tune --rebuild-ledger rebuilds it from the run records"
        ) from None
    if not study.user_attrs.get("mmbench_study_hash"):
        with warnings.catch_warnings():  # ExperimentalWarning: the metric name is for the dashboard only
            warnings.simplefilter("ignore")
            study.set_metric_names([f"val_{st.metric}"])
        study.set_user_attr("mmbench_study_hash", st.study_hash)
        study.set_user_attr("mmbench_label", st.label)
        if st.sampler == "tpe" and not study.trials:
            study.enqueue_trial(st.anchor, skip_if_exists=True)
    return study


# --------------------------------------------------------------------------- trial lock
@contextlib.contextmanager
def trial_lock(st: Study, results, index: int):
    """An exclusive, non-blocking flock on ``trial-NNNN.lock``: yields True when held, False when
    another process holds it. The kernel releases it when the process dies."""
    folder = st.folder(results)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"trial-{index:04d}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
