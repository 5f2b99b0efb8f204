"""Search spaces: the ``[search]`` tables beside each method's and dataset's defaults.

* Shared dimensions (``train.lr``, ``train.weight_decay``) live in ``configs/<dataset>.toml``
  under ``[search]``, keyed by the dotted setting, and are the same for every method on that
  dataset, ``joint`` and ``unimodal`` included.
* Method dimensions live in the method's settings TOML (``configs/methods/<method>.toml`` or a
  plugin's ``settings_toml``) under ``[search]`` (every dataset), with
  ``[search.datasets.<dataset>]`` replacing individual keys; bare names mean ``method.<name>``.
* A dimension is ``{low, high[, log]}`` (float), ``{low, high, int = true[, log]}`` (int) or
  ``{choices = [...]}`` (categorical, scalars only), and needs a ``source`` starting with
  ``[paper]``, ``[code]`` or ``[guess]``. ``--space FILE`` replaces the whole space with a file of
  the same shape (one ``[search]`` table, dotted or bare keys).

``validate`` refuses, one line each, before anything runs: an unknown key, a bad range, an
untagged source, a key also fixed with ``--set``, a range that does not hold the resolved
default (the anchor trial would lie outside its own distribution), and a corner (each bound,
each choice) that ``resolve_config`` refuses.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from mmbench.results.errors import ConfigError

SOURCE_TAGS = ("[paper]", "[code]", "[guess]")
SHARED_PREFIXES = ("train.", "data.")
MAX_METHOD_DIMS = 2


@dataclass(frozen=True)
class Dim:
    """One searched setting (``key`` is canonical and dotted: ``train.lr``, ``method.alpha``)."""

    key: str
    kind: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()
    source: str = ""
    origin: str = ""  # the file and table it was declared in
    group: int = 0  # 0: shared (same draws for every method), 1: the method's own

    def to_dict(self) -> dict:
        d = asdict(self)
        d["choices"] = list(self.choices)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Dim:
        return cls(**{**d, "choices": tuple(d.get("choices", ()))})

    def describe(self) -> str:
        if self.kind == "categorical":
            return "{" + ", ".join(repr(c) for c in self.choices) + "}"
        scale = "log " if self.log else ""
        kind = "int " if self.kind == "int" else ""
        return f"{kind}{scale}[{self.low:g}, {self.high:g}]"

    def contains(self, value) -> bool:
        if self.kind == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return self.low - 1e-12 * abs(self.low) <= value <= self.high + 1e-12 * abs(self.high)

    def corners(self) -> list:
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            return [int(self.low), int(self.high)]
        return [float(self.low), float(self.high)]


def _dim(key: str, spec, where: str, group: int) -> Dim:
    if not isinstance(spec, dict):
        raise ConfigError(
            f'{where}: {key} must be a table such as {{ low = 0.1, high = 1.0, source = "[guess] ..." }}'
        )
    source = spec.get("source")
    if not isinstance(source, str) or not source.startswith(SOURCE_TAGS):
        raise ConfigError(f"{where}: {key} needs a source starting with [paper], [code] or [guess]")
    unknown = set(spec) - {"low", "high", "log", "int", "choices", "source"}
    if unknown:
        raise ConfigError(
            f"{where}: {key} has unknown field(s) {', '.join(sorted(unknown))}; "
            "use low, high, log, int, choices, source"
        )
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: {key} has empty choices")
        if any(isinstance(c, (list, dict)) for c in choices):
            raise ConfigError(f"{where}: {key} choices must be scalars (numbers, strings, booleans)")
        if {"low", "high", "log", "int"} & set(spec):
            raise ConfigError(f"{where}: {key} gives both choices and a range")
        return Dim(key, "categorical", choices=tuple(choices), source=source, origin=where, group=group)
    low, high = spec.get("low"), spec.get("high")
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"{where}: {key} needs a finite {name}")
    if low >= high:
        raise ConfigError(f"{where}: {key} has low {low!r} >= high {high!r}")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ConfigError(f"{where}: {key} is log-scaled but low {low!r} <= 0")
    is_int = bool(spec.get("int", False))
    if is_int and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"{where}: {key} is an int dimension with a non-integer bound ({low!r}, {high!r})")
    return Dim(key, "int" if is_int else "float", float(low), float(high), log, (), source, where, group)


def _canonical(key: str) -> str:
    if key.startswith(SHARED_PREFIXES) or key.startswith("method."):
        return key
    return f"method.{key}"


def _table_dims(table: dict, where: str, dataset: str, group_of) -> dict[str, Dim]:
    out = {}
    for k, v in table.items():
        if k == "datasets":
            continue
        key = _canonical(k)
        out[key] = _dim(key, v, where, group_of(key))
    over = (table.get("datasets") or {}).get(dataset) or {}
    for k, v in over.items():
        key = _canonical(k)
        out[key] = _dim(key, v, f"{where.rstrip(']')}.datasets.{dataset}]", group_of(key))
    return out


def _group(key: str) -> int:
    return 0 if key.startswith(SHARED_PREFIXES) else 1


def load_space(dataset: str, method: str, space_file: str | None = None) -> list[Dim]:
    """The declared space of (dataset, method): shared dimensions first, then the method's,
    each group in key order (so every method's shared draws line up)."""
    from mmbench.benchmark.config import dataset_preset, method_preset

    if space_file is not None:
        path = Path(space_file)
        try:
            with path.open("rb") as fh:
                table = tomllib.load(fh).get("search", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"--space {path}: cannot read it ({exc})") from None
        dims = _table_dims(table, f"{path} [search]", dataset, _group)
    else:
        dims = _table_dims(
            dataset_preset(dataset).get("search", {}),
            f"configs/{dataset}.toml [search]",
            dataset,
            lambda k: 0,
        )
        for key in dims:
            if not key.startswith(SHARED_PREFIXES):
                raise ConfigError(
                    f"configs/{dataset}.toml [search]: {key} is not a shared train./data. setting"
                )
        mdims = _table_dims(
            method_preset(method).get("search", {}), f"{_method_file(method)} [search]", dataset, lambda k: 1
        )
        for key in mdims:
            if not key.startswith("method."):
                raise ConfigError(
                    f"{_method_file(method)} [search]: {key} is not a method setting; "
                    "shared settings are searched in the dataset's TOML"
                )
        dims.update(mdims)
    if sum(d.group == 1 for d in dims.values()) > MAX_METHOD_DIMS and space_file is None:
        raise ConfigError(f"{_method_file(method)} [search]: at most {MAX_METHOD_DIMS} method dimensions")
    return sorted(dims.values(), key=lambda d: (d.group, d.key))


def _method_file(method: str) -> str:
    return f"configs/methods/{method}.toml"


def anchor(dims: list[Dim], dataset: str, method: str, fixed: dict) -> dict:
    """The resolved default of every searched key under the fixed ``--set`` overrides (plan
    index 0, the published setting)."""
    from mmbench.benchmark import config as config_mod

    cfg = config_mod.resolve_config(dataset, method, fixed)
    return {d.key: config_mod._current(cfg, cfg.method_params, d.key) for d in dims}


def validate(dims: list[Dim], dataset: str, method: str, fixed: dict) -> dict:
    """Refuse a space the harness could not run (one ``ConfigError`` line); return the anchor."""
    from mmbench.benchmark import config as config_mod
    from mmbench.benchmark.registry import get_dataset, get_method

    if not dims:
        raise ConfigError(
            f"nothing to tune for {method} on {dataset}: its TOML has no [search] and the dataset's "
            "shared dimensions were removed"
        )
    valid = {
        config_mod._canonical(k) for k in config_mod.valid_keys(get_dataset(dataset), get_method(method))
    }
    fixed_keys = {config_mod._canonical(k) for k in fixed}
    for d in dims:
        if d.key not in valid:
            raise ConfigError(f"{d.origin}: unknown key {d.key}; valid keys: {', '.join(sorted(valid))}")
        if d.key in fixed_keys:
            raise ConfigError(f"{d.origin}: {d.key} is both searched and fixed with --set; drop one")
    base = anchor(dims, dataset, method, fixed)
    for d in dims:
        if not d.contains(base[d.key]):
            raise ConfigError(
                f"{d.origin}: {d.key} range {d.describe()} does not contain the resolved default "
                f"{base[d.key]!r}: widen it so the published setting is inside"
            )
        for corner in d.corners():
            try:
                config_mod.resolve_config(dataset, method, {**fixed, d.key: corner})
            except ConfigError as exc:
                raise ConfigError(
                    f"{d.origin}: {d.key} = {corner!r} is refused by the harness ({exc})"
                ) from None
    return base


def space_toml(dims: list[Dim], base: dict) -> str:
    """The resolved space as TOML, every dimension followed by its source (``--space -m -d``)."""
    lines = ["[search]"]
    for d in dims:
        if d.kind == "categorical":
            body = "choices = [" + ", ".join(_toml_value(c) for c in d.choices) + "]"
        else:
            body = f"low = {_toml_value(d.low, d.kind)}, high = {_toml_value(d.high, d.kind)}"
            body += ", int = true" if d.kind == "int" else ""
            body += ", log = true" if d.log else ""
        lines.append(f'"{d.key}" = {{ {body} }}  # default {base[d.key]!r}; {d.source} ({d.origin})')
    return "\n".join(lines)


def _toml_value(v, kind: str = "") -> str:
    if kind == "int":
        return str(int(v))
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace('"', '\\"') + '"'
    return repr(v)
