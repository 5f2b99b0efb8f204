"""Suites: TOML files of datasets x methods x seeds x overrides (``mmbench/configs/suites/``).

A suite file::

    [suite]
    description = "..."
    seeds = 5                      # or a list, e.g. [0, 1, 2]
    datasets = ["cremad", "kinetics_sounds"]
    methods = ["joint", "ogm_ge", "sustained_boost"]
    set = { epochs = 2 }           # overrides for every run (optional)

    [[runs]]                       # extra entries (optional), each expanded over its own
    datasets = ["cremad"]          # datasets/methods/seeds, defaulting to the suite's
    methods = ["unimodal"]
    set = { "method.modality" = "audio" }
    tag = "audio"                  # optional explicit tag

``methods`` entries of the grid that need per-dataset settings (``unimodal``) are expanded by
``expand_special``: one ``unimodal`` run per modality of the dataset. ``unimodal`` jobs come
first, so that runs initialised from them (``method.init_from_unimodal``) or distilling from them
(``needs_unimodal_teachers``) find them finished; ``reference_phases`` makes a local sweep finish
them before such runs start. ``"*"`` stands for every registered method that runs on the dataset
(one that refuses it, e.g. ``greedy`` without staged encoders, is left out of that dataset's
grid); a method named explicitly is never left out.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from mmbench.results.errors import ConfigError


@dataclass(frozen=True)
class Job:
    """One run of a sweep: a seed of one (dataset, method, overrides)."""

    dataset: str
    method: str
    seed: int
    overrides: tuple = ()  # sorted (key, JSON text of the value) pairs: hashable, any TOML value
    tag: str | None = None
    root: str | None = None

    @property
    def overrides_dict(self) -> dict:
        return {k: json.loads(v) for k, v in self.overrides}

    def with_overrides(self, extra: dict) -> Job:
        return Job(self.dataset, self.method, self.seed, freeze({**self.overrides_dict, **extra}), self.tag, self.root)

    def label(self) -> str:
        extra = f"-{self.tag}" if self.tag else ""
        sets = " ".join(f"{k}={v}" for k, v in self.overrides_dict.items())
        return f"{self.dataset}/{self.method}{extra} seed {self.seed}" + (f" [{sets}]" if sets else "")


@dataclass
class Suite:
    name: str
    description: str
    jobs: list[Job] = field(default_factory=list)


def suite_names() -> list[str]:
    folder = resources.files("mmbench.configs").joinpath("suites")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _seeds(value) -> list[int]:
    if isinstance(value, int):
        return list(range(value))
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return value
    raise ConfigError(f"suite seeds must be a count or a list of integers, got {value!r}")


def freeze(overrides: dict) -> tuple:
    """Overrides as a hashable, order-independent tuple of (key, JSON text)."""
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in overrides.items()))


def _methods(names) -> list[str]:
    """``"*"`` stands for every registered method."""
    if "*" in names:
        from mmbench.benchmark.registry import method_names

        return [n for n in method_names() if n not in names] + [n for n in names if n != "*"]
    return list(names)


def _runs_on(dataset: str, method: str, overrides: dict) -> bool:
    """Whether ``method`` accepts ``dataset`` (a ``ConfigError`` from ``Method.validate_params`` or
    ``validate_config`` says not); settings that need a per-run value (``unimodal``'s modality)
    are supplied first."""
    from mmbench.benchmark.config import resolve_config

    ov = expand_special(dataset, method, overrides)[0][0]
    try:
        resolve_config(dataset, method, ov)
    except ConfigError:
        return False
    return True


def reference_phases(jobs: list[Job]) -> list[list[Job]]:
    """``[unimodal jobs, the others]`` when one of the others starts from or distils from the
    unimodal reference runs (``Method.needs_unimodal_teachers``, ``uses_unimodal_init``), so a
    pool of workers finishes the references first; else ``[jobs]``."""
    from mmbench.benchmark.config import resolve_config
    from mmbench.benchmark.registry import get_method

    def needs(job: Job) -> bool:
        cls = get_method(job.method)
        if getattr(cls, "needs_unimodal_teachers", False):
            return True
        cfg = resolve_config(job.dataset, job.method, job.overrides_dict, seed=job.seed, tag=job.tag)
        return bool(cls.uses_unimodal_init(cfg.method_params))

    refs = [j for j in jobs if j.method == "unimodal"]
    rest = [j for j in jobs if j.method != "unimodal"]
    if refs and any(needs(j) for j in rest):
        return [refs, rest]
    return [jobs]


def expand_special(dataset: str, method: str, overrides: dict) -> list[tuple[dict, str | None]]:
    """``unimodal`` without a modality becomes one run per modality of the dataset."""
    if method == "unimodal" and "method.modality" not in overrides:
        from mmbench.benchmark.registry import get_dataset

        return [({**overrides, "method.modality": m}, None) for m in get_dataset(dataset).modalities]
    return [(overrides, None)]


# --------------------------------------------------------------------------- reading and validating
TOP_KEYS = {"suite": "table", "runs": "array of tables", "paper": "table"}
SUITE_KEYS = {"description": "string", "seeds": "seeds", "datasets": "names", "methods": "names", "set": "table"}
RUN_KEYS = {"datasets": "names", "methods": "names", "seeds": "seeds", "set": "table", "tag": "string",
            "paper_row": "string", "label": "string"}
PAPER_KEYS = {"tables": "names", "figures": "names"}


def _type_problem(where: str, value, kind: str) -> str | None:
    """Why ``value`` is not of ``kind`` (None when it is)."""
    ok = {
        "string": isinstance(value, str),
        "table": isinstance(value, dict),
        "array of tables": isinstance(value, list) and all(isinstance(v, dict) for v in value),
        "names": isinstance(value, list) and all(isinstance(v, str) and v for v in value),
        "seeds": (isinstance(value, int) and not isinstance(value, bool) and value >= 1)
        or (isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)),
    }[kind]
    if ok:
        return None
    want = {"names": "a list of names, e.g. [\"mfeat\"]", "seeds": "a count >= 1 or a list of seeds >= 0",
            "array of tables": "[[runs]] tables"}.get(kind, f"a {kind}")
    return f"{where} is {type(value).__name__} {value!r:.60}, expected {want}"


def _unknown(where: str, key: str, known) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known))})"
    return f"{where}: unknown key {key!r}{hint}"


def _check_keys(where: str, table: dict, spec: dict) -> list[str]:
    out = []
    for key, value in table.items():
        if key not in spec:
            out.append(_unknown(where, key, spec))
        elif (p := _type_problem(key if where == "top level" else f"{where}.{key}", value, spec[key])) is not None:
            out.append(p)
    return out


def suite_problems(data: dict) -> list[str]:
    """Every problem of a parsed suite file: unknown keys (with a did-you-mean) and wrong types."""
    problems = _check_keys("top level", data, TOP_KEYS)
    if isinstance(data.get("suite"), dict):
        problems += _check_keys("[suite]", data["suite"], SUITE_KEYS)
    if isinstance(data.get("paper"), dict):
        problems += _check_keys("[paper]", data["paper"], PAPER_KEYS)
    runs = data.get("runs")
    if isinstance(runs, list):
        for i, entry in enumerate(runs, 1):
            if isinstance(entry, dict):
                problems += _check_keys(f"[[runs]] #{i}", entry, RUN_KEYS)
    return problems


def parse_suite_text(raw: bytes, where: str) -> dict:
    """The parsed, validated suite at ``where`` (a path or a built-in name): one ``ConfigError``
    listing every problem, one per line (encoding, TOML syntax with line and column, unknown keys,
    types)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"suite file {where} is not UTF-8 text (byte {raw[exc.start]:#04x} at offset "
                          f"{exc.start}); save it as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"suite file {where} is not valid TOML: {exc}") from None
    problems = suite_problems(data)
    if problems:
        lines = "\n".join(f"  {p}" for p in problems)
        raise ConfigError(f"suite file {where} has {len(problems)} problem(s):\n{lines}")
    return data


def read_suite(name_or_path: str) -> tuple[dict, str]:
    """``(validated TOML, suite name)`` of a suite given by name (``configs/suites/<name>.toml``)
    or path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read suite file {path}: {exc.strerror or exc}") from None
        return parse_suite_text(raw, str(path)), path.stem
    ref = resources.files("mmbench.configs").joinpath("suites", f"{name_or_path}.toml")
    if not ref.is_file():
        raise ConfigError(
            f"unknown suite {name_or_path!r}; built-in suites: {', '.join(suite_names())} (or give a .toml path)"
        )
    return parse_suite_text(ref.read_bytes(), name_or_path), name_or_path


def load_suite(name_or_path: str, seeds_override: int | None = None, roots: dict | None = None) -> Suite:
    """Read a suite by name (``mmbench/configs/suites/<name>.toml``) or path and expand its jobs."""
    data, name = read_suite(name_or_path)
    head = data.get("suite", {})
    base_seeds = _seeds(head.get("seeds", 1)) if seeds_override is None else list(range(seeds_override))
    base_set = dict(head.get("set", {}))
    entries = []
    if head.get("datasets") and head.get("methods"):
        entries.append({"datasets": head["datasets"], "methods": head["methods"]})
    entries += data.get("runs", [])
    jobs: list[Job] = []
    seen = set()
    roots = roots or {}
    for entry in entries:
        seeds = base_seeds if seeds_override is not None or "seeds" not in entry else _seeds(entry["seeds"])
        names = entry.get("methods", head.get("methods", []))
        for dataset in entry.get("datasets", head.get("datasets", [])):
            for method in _methods(names):
                overrides = {**base_set, **entry.get("set", {})}
                if "*" in names and method not in names and not _runs_on(dataset, method, overrides):
                    continue
                for ov, _ in expand_special(dataset, method, overrides):
                    for seed in seeds:
                        job = Job(dataset, method, seed, freeze(ov), entry.get("tag"), roots.get(dataset))
                        if job not in seen:
                            seen.add(job)
                            jobs.append(job)
    if not jobs:
        raise ConfigError(f"suite {name} defines no runs (give [suite] datasets and methods, or [[runs]])")
    return Suite(name, head.get("description", ""), unimodal_first(jobs))


def unimodal_first(jobs: list[Job]) -> list[Job]:
    """``unimodal`` jobs before the others (stable otherwise): runs with
    ``method.init_from_unimodal`` start from their selected weights (benchmark/unimodal_init.py)."""
    return sorted(jobs, key=lambda job: job.method != "unimodal")
