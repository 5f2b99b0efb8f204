"""The run record's schema as code: one validator per file of a seed folder (docs/records.md).

``result.json``, ``config.json``, each ``history.jsonl`` line, ``probe.json`` and ``study.json``
are checked on every read against the shapes ``docs/records.md`` describes. A check returns the
list of problems, each ``"<dotted.field>: <what is wrong>"`` (empty when the value is a valid
record); readers (``store.read_record``, ``store.read_json_checked``,
``store.read_history_checked``, ``probe.record.read_probe``) turn the first one into a
``store.Problem`` so a damaged record is listed among the unreadable records, never a traceback
and never a silently missing cell.

Stdlib only (no torch, no numpy): the checks are small declarative specs (``Obj``, ``MapOf``,
``ListOf``, ``Num``, ``Int``, ``Str``, ``Nullable``) walked by ``check``. Keys may be added within
a schema version (docs/records.md, "Versioning"), so objects accept keys they do not name;
the keys they name must have the stated types.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# --------------------------------------------------------------------------- the spec types


@dataclass(frozen=True)
class Num:
    """A JSON number (not a bool), finite, within ``[lo, hi]`` when given."""

    lo: float | None = None
    hi: float | None = None


@dataclass(frozen=True)
class Int:
    """A JSON integer (not a bool) of at least ``lo`` when given."""

    lo: int | None = None


@dataclass(frozen=True)
class Str:
    """A string, non-empty when ``nonempty``, one of ``choices`` when given."""

    choices: tuple = ()
    nonempty: bool = False


@dataclass(frozen=True)
class Bool:
    pass


@dataclass(frozen=True)
class Any_:
    """Anything (a field whose content is free-form, e.g. a method's own diagnostics)."""


@dataclass(frozen=True)
class Nullable:
    inner: object


@dataclass(frozen=True)
class ListOf:
    item: object


@dataclass(frozen=True)
class MapOf:
    """An object with string keys (of ``keys`` when given) and values of one spec."""

    value: object
    keys: tuple = ()


@dataclass(frozen=True)
class Obj:
    """An object whose ``required`` keys must be present and whose ``optional`` keys, when present,
    must match; other keys are allowed (added within a schema version)."""

    required: dict = field(default_factory=dict)
    optional: dict = field(default_factory=dict)

    def __hash__(self):  # frozen dataclass with dict fields: hash by identity
        return id(self)


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _want(spec) -> str:
    if isinstance(spec, Num):
        rng = (
            f" in [{spec.lo:g}, {spec.hi:g}]"
            if spec.lo is not None and spec.hi is not None
            else (f" >= {spec.lo:g}" if spec.lo is not None else "")
        )
        return f"a finite number{rng}"
    if isinstance(spec, Int):
        return "an integer" + (f" >= {spec.lo}" if spec.lo is not None else "")
    if isinstance(spec, Str):
        if spec.choices:
            return "one of " + ", ".join(repr(c) for c in spec.choices)
        return "a non-empty string" if spec.nonempty else "a string"
    if isinstance(spec, Bool):
        return "true or false"
    if isinstance(spec, Nullable):
        return f"{_want(spec.inner)} or null"
    if isinstance(spec, ListOf):
        return "a list"
    if isinstance(spec, (MapOf, Obj)):
        return "an object"
    return "a value"


def check(value, spec, path: str = "") -> list[str]:
    """Every problem of ``value`` against ``spec``, as ``"<path>: <problem>"`` lines."""
    where = path or "(the file)"
    if isinstance(spec, Any_):
        return []
    if isinstance(spec, Nullable):
        return [] if value is None else check(value, spec.inner, path)
    bad = [f"{where}: is {_kind(value)}{_shown(value)}, expected {_want(spec)}"]
    if isinstance(spec, Num):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return bad
        if (spec.lo is not None and value < spec.lo) or (spec.hi is not None and value > spec.hi):
            return bad
        return []
    if isinstance(spec, Int):
        if isinstance(value, bool) or not isinstance(value, int) or (spec.lo is not None and value < spec.lo):
            return bad
        return []
    if isinstance(spec, Str):
        if (
            not isinstance(value, str)
            or (spec.nonempty and not value)
            or (spec.choices and value not in spec.choices)
        ):
            return bad
        return []
    if isinstance(spec, Bool):
        return [] if isinstance(value, bool) else bad
    if isinstance(spec, ListOf):
        if not isinstance(value, list):
            return bad
        return [p for i, v in enumerate(value) for p in check(v, spec.item, f"{path}[{i}]")]
    if isinstance(spec, MapOf):
        if not isinstance(value, dict):
            return bad
        out = []
        for k, v in value.items():
            if spec.keys and k not in spec.keys:
                out.append(f"{_join(path, k)}: unknown key, expected one of {', '.join(spec.keys)}")
                continue
            out += check(v, spec.value, _join(path, k))
        return out
    if isinstance(spec, Obj):
        if not isinstance(value, dict):
            return bad
        out = []
        for k, sub in spec.required.items():
            if k not in value:
                out.append(f"{_join(path, k)}: missing")
            else:
                out += check(value[k], sub, _join(path, k))
        for k, sub in spec.optional.items():
            if k in value:
                out += check(value[k], sub, _join(path, k))
        return out
    raise TypeError(f"not a spec: {spec!r}")


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _shown(value) -> str:
    if isinstance(value, (dict, list)) or value is None:
        return ""
    text = repr(value)
    return f" ({text[:40]}{'...' if len(text) > 40 else ''})"


# --------------------------------------------------------------------------- the record specs
RULES = ("val", "last", "test-best")
FRACTION = Num(0.0, 1.0)
# METRICS: {"fusion": {"acc", "map", "f1"}, "<modality>": {...}}; each value a fraction
METRIC_VALUES = Obj(optional={"acc": FRACTION, "map": FRACTION, "f1": FRACTION})
METRICS = MapOf(METRIC_VALUES)
SELECTED = Obj(required={"epoch": Int(0), "test": Nullable(METRICS)}, optional={"val": Nullable(METRICS)})
COMPONENT = Obj(optional={"name": Str(), "version": Nullable(Str()), "origin": Nullable(Str())})
IDENTITY = Obj(
    optional={"hash": Str(nonempty=True), "components": MapOf(COMPONENT), "config": MapOf(Any_())},
)
COST = Obj(
    optional={
        "schema": Int(0),
        "params": Obj(optional={"encoders": MapOf(Int(0)), "heads": Int(0), "total": Int(0)}),
        "flops": Obj(
            optional={
                "train_step": Nullable(Num(0)),
                "train_batch": Nullable(Int(0)),
                "eval_per_sample": Nullable(Num(0)),
                "error": Nullable(Str()),
            }
        ),
        "seconds_per_epoch": Obj(
            optional={"train": Nullable(Num(0)), "eval": Nullable(Num(0)), "epochs_timed": Int(0)}
        ),
        "peak_memory": Obj(optional={"bytes": Nullable(Int(0)), "kind": Nullable(Str())}),
        "device": Str(),
    }
)

RESULT = Obj(
    required={
        "dataset": Str(nonempty=True),
        "method": Str(nonempty=True),
        "seed": Int(0),
        "status": Str(("finished", "failed")),
    },
    optional={
        "schema_version": Int(1),
        "identity": IDENTITY,
        "tag": Nullable(Str()),
        "error": Nullable(Str()),
        "failed_epoch": Nullable(Int(0)),
        "modalities": ListOf(Str(nonempty=True)),
        "heads": MapOf(Str()),
        "unimodal_reference": Nullable(Bool()),
        "reference_modality": Nullable(Str()),
        "reproducible": Obj(optional={"bitwise": Bool(), "why": Str()}),
        "selection": MapOf(SELECTED),
        "reported_rule": Str(RULES),
        "precision": Str(),
        "initialised_from": Nullable(MapOf(Obj(optional={"run": Str(), "rule": Str(), "epoch": Int(0)}))),
        "teachers_from": Nullable(MapOf(Obj(optional={"run": Str(), "rule": Str(), "epoch": Int(0)}))),
        "test_evaluated": Bool(),
        "tuning": Nullable(MapOf(Any_())),
        "config": Obj(optional={"train": MapOf(Any_()), "method": MapOf(Any_()), "protocol": Str()}),
        "checkpoints": MapOf(Obj(optional={"epoch": Nullable(Int(0)), "file": Nullable(Str())})),
        "seconds": Num(0),
        "seconds_this_call": Num(0),
        "epochs": Int(0),
        "cost": Nullable(COST),
    },
)

CONFIG = Obj(
    required={"dataset": Str(nonempty=True), "method": Str(nonempty=True), "seed": Int(0)},
    optional={
        "protocol": Str(),
        "select_tie": Str(),
        "device": Str(),
        "tag": Nullable(Str()),
        "train": MapOf(Any_()),
        "data": MapOf(Any_()),
        "method_params": MapOf(Any_()),
        "overrides": MapOf(Any_()),
        "sources": MapOf(Any_()),
        "identity": Obj(
            required={"hash": Str(nonempty=True)},
            optional={"config": MapOf(Any_()), "components": MapOf(COMPONENT)},
        ),
        "environment": MapOf(Any_()),
        "splits": MapOf(Any_()),
        "data_warnings": ListOf(Str()),
    },
)

HISTORY_LINE = Obj(
    required={"epoch": Int(0), "test": Nullable(METRICS)},  # null: a tuning trial run (train.eval_test false)
    optional={
        "train": MapOf(Nullable(Num())),
        "val": Nullable(METRICS),
        "diagnostics": Any_(),
        "lr": MapOf(Nullable(Num())),
        "selectable": Bool(),
        "time": MapOf(Nullable(Num(0))),
    },
)

SHAPLEY = Obj(
    required={"values": MapOf(Num()), "fused": Num(), "all_masked": Num(), "degree": Num()},
    optional={"metric": Str(), "coalitions": MapOf(METRIC_VALUES)},
)
PROBE = Obj(
    required={
        "run": Obj(
            required={"identity_hash": Nullable(Str()), "epoch": Int(0)},
            optional={
                "dataset": Str(),
                "method": Str(),
                "tag": Nullable(Str()),
                "seed": Int(0),
                "rule": Str(),
            },
        ),
        "recipe_hash": Str(nonempty=True),
        "modalities": ListOf(Str(nonempty=True)),
        "probes": MapOf(
            Obj(required={"test": METRIC_VALUES}, optional={"epoch": Int(0), "val": METRIC_VALUES})
        ),
        "imbalance": Obj(
            required={
                "probe_ratio": Obj(
                    required={"value": Nullable(Num())},
                    optional={"strongest": Str(), "weakest": Str(), "split": Str(), "metric": Str()},
                ),
                "shapley": SHAPLEY,
            }
        ),
    },
    optional={"schema": Int(1), "recipe": MapOf(Any_()), "feature_dims": MapOf(Int(0)), "seconds": Num(0)},
)

# last.ckpt (torch.save of a dict; the tensors' content is torch's to check)
CHECKPOINT = Obj(
    required={
        "epoch": Int(0),
        "global_step": Int(0),
        "model": MapOf(Any_()),
        "optimizers": Any_(),
        "method": Any_(),
        "rng": Any_(),
        "history": ListOf(MapOf(Any_())),
        "config": MapOf(Any_()),
    },
)

# study.json (a tuning study's record, written by the tuning package): HOOK. Its fields are not
# settled here; only "a JSON object" is checked. Add them to STUDY (as for PROBE) where the writer lives.
STUDY = Obj()


# --------------------------------------------------------------------------- the checks readers call
def check_result(rec) -> list[str]:
    """Problems of a ``result.json`` (a finished record needs its ``selection``)."""
    problems = check(rec, RESULT)
    if not problems and rec["status"] == "finished" and "selection" not in rec:
        problems.append("selection: missing (a finished record needs it)")
    if not problems and rec["status"] == "finished":
        for rule, sel in rec["selection"].items():
            if rule in RULES and sel.get("val") is None and rule == "val":
                problems.append("selection.val.val: null (the val rule needs val metrics)")
            if rule in RULES and sel.get("test") is None and rec.get("test_evaluated", True):
                problems.append(f"selection.{rule}.test: null, but the run evaluated test (test_evaluated)")
    return problems


def check_config(cfg) -> list[str]:
    return check(cfg, CONFIG)


def check_history_line(line) -> list[str]:
    return check(line, HISTORY_LINE)


def check_probe(probe) -> list[str]:
    problems = check(probe, PROBE)
    if not problems:
        for m in probe["modalities"]:
            if m not in probe["imbalance"]["shapley"]["values"]:
                problems.append(f"imbalance.shapley.values.{m}: missing (a modality of 'modalities')")
    return problems


def check_checkpoint(ckpt) -> list[str]:
    """Problems of a loaded ``last.ckpt`` (its keys and their kinds, not the tensors)."""
    return check(ckpt, CHECKPOINT)


def check_study(study) -> list[str]:
    return check(study, STUDY)


CHECKS = {
    "result.json": check_result,
    "config.json": check_config,
    "history.jsonl": check_history_line,
    "probe.json": check_probe,
    "study.json": check_study,
}


def first_problem(problems: list[str], more: bool = True) -> str:
    """One line: the first problem, and how many more."""
    if not problems:
        return ""
    extra = f" (+{len(problems) - 1} more)" if more and len(problems) > 1 else ""
    return problems[0] + extra
