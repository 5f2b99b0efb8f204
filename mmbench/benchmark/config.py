"""Run configuration: dataclasses, TOML presets and ``--set key=value`` overrides.

Resolution order (later wins):

1. dataclass defaults below and the method's ``Hyper`` defaults;
2. ``configs/<dataset>.toml`` — the *shared* per-dataset training setup used by every method
   (``[train]``, ``[data]``), each value's provenance in ``[sources]``;
3. the method's settings TOML (``mmbench/methods/<method>.toml``, or the file a plugin's class
   names in ``settings_toml``) — per-dataset method settings (``[datasets.<dataset>]``)
   and, under ``protocol = "official"``, the method's own published training setup
   (``[official.<dataset>.train]``), provenance in ``[sources.<dataset>]``;
4. ``--set`` overrides. Keys: ``epochs``, ``batch_size``, ``lr`` ... (shorthand for
   ``train.<key>``), ``train.<key>``, ``data.<key>`` (harness data fields, or the dataset's
   preprocessing options such as ``data.audio.seconds``), ``method.<key>``, ``protocol``,
   ``select_tie``.

The resolved config is then range-checked (``config_checks.check_settings``): one
``ConfigError`` line before anything is written.

Every override that changes a value tags the run id (``results/<ds>/<method>-<tag>/seed-<n>``).
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import math
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from mmbench.benchmark.config_checks import check_feasible, check_overrides_once, check_settings
from mmbench.results import names
from mmbench.results.errors import ConfigError


@dataclass
class TrainConfig:
    """The training setup shared by every method on a dataset (``protocol = "shared"``)."""

    epochs: int = 20
    batch_size: int = 64
    eval_batch_size: int = 512
    optimizer: str = "sgd"  # sgd | adam | adamw | adagrad
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 1e-4
    betas: list = field(default_factory=lambda: [0.9, 0.999])  # adam / adamw (torch's default)
    schedule: str = "step"  # step | constant
    step_size: int = 70
    gamma: float = 0.1
    # "epoch_start": step the scheduler before each epoch, as the official AUG code (old PyTorch
    # order; the LR drops one epoch earlier); "epoch_end": the modern order.
    step_at: str = "epoch_start"
    amp: str = "auto"  # auto (bf16 autocast on CUDA) | bf16 | off
    drop_last: bool = False
    channels_last: bool = True  # on CUDA: channels_last memory format for 2-D convolutions
    compile: bool = False  # torch.compile each encoder (mmbench run --compile)
    # torch intra-op threads the run computes with (torch.set_num_threads at start and resume).
    # Part of the identity: CPU float reductions, hence metrics, depend on it.
    threads: int = 1
    # experiment trackers fed from history.jsonl (mmbench/trackers): never in the identity
    loggers: list = field(default_factory=list)  # tensorboard | wandb | mlflow | csv
    # evaluate the test split every epoch; false (tuning trial runs) records "test": null and
    # no test-best selection, so test can never feed a tuning decision. Speed only, not identity.
    eval_test: bool = True
    # keep last.ckpt/best.ckpt once result.json is written; false deletes them then (last.ckpt
    # is still written while the run is partial, for resume). Speed only, not identity.
    keep_checkpoints: bool = True


@dataclass
class DataConfig:
    """Harness-level data settings; dataset-specific preprocessing lives in ``options``."""

    preset: str = "paper"
    split_seed: int = 0
    val_fraction: float = 0.1
    drop_missing: bool | None = None  # None: the dataset's default
    num_workers: int = -1  # -1: automatic (0 for in-memory data, else min(8, cores) on CUDA)
    pin_memory: bool = True
    persistent_workers: bool | None = None  # None: on CUDA only (exact resume needs them off)
    options: dict = field(default_factory=dict)  # resolved preset options of the dataset
    # K >= 2: re-partition train ∪ val into K stratified folds, fold (seed mod K) validates and
    # the test rows stay those of the standard split (mmbench.benchmark.folds); 0 = off. In the
    # identity only when set.
    cv_folds: int = 0


@dataclass
class RunConfig:
    dataset: str
    method: str
    seed: int = 0
    protocol: str = "shared"  # shared | official
    select_tie: str = "first"  # first | last (val selection ties)
    device: str = "auto"
    tag: str | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method_params: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)  # what the user set, as given
    sources: dict = field(default_factory=dict)  # provenance of preset values

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        d = copy.deepcopy(d)
        d["train"] = TrainConfig(**d.get("train", {}))
        d["data"] = DataConfig(**d.get("data", {}))
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def run_name(self) -> str:
        return f"{self.method}-{self.tag}" if self.tag else self.method

    @property
    def reported_rule(self) -> str:
        """The selection rule a table reports for this run: ``val`` under ``shared``; under
        ``official`` the papers' protocol, ``test-best`` (the official scripts keep the best test
        epoch and have no validation split)."""
        return "test-best" if self.protocol == "official" else "val"


TOP_LEVEL_KEYS = ("protocol", "select_tie")
# data.preset = "smoke" (tiny inputs for CPU checks) also caps the epoch budget, unless epochs is set
SMOKE_PRESET = "smoke"
SMOKE_EPOCHS = 2
# harness settings every official script shares, applied under protocol = "official" before the
# method's own [official.<dataset>] section (which may change them); --set still wins
PROTOCOL_DEFAULTS = {
    "official": {
        "train.amp": (
            "off",
            "[code] fp32: no official script (OGM-GE, PMR, AGM, MMPareto, MLA, ReconBoost, NeurIPS25-AUG) "
            "uses autocast, GradScaler or .half()",
        ),
        "data.val_fraction": (
            0.0,
            "[code] the official scripts train on the whole train set and keep the best test epoch "
            "(reported rule test-best); --set data.val_fraction=0.1 carves a val slice on request",
        ),
    }
}
# settings that change speed (or where curves go), not results: they never tag a run and never block a resume
SPEED_KEYS = (
    "train.compile",
    "train.channels_last",
    "train.eval_batch_size",
    "data.num_workers",
    "data.pin_memory",
    "data.persistent_workers",
    "train.loggers",
    "train.eval_test",
    "train.keep_checkpoints",
)


def speed_keys(method: str, method_params: dict) -> tuple[str, ...]:
    """``SPEED_KEYS`` less those the method's settings make result-changing (its
    ``result_settings``: MLA's batch-entropy gate depends on the evaluation batch size)."""
    from mmbench.benchmark.registry import get_method

    keep = set(getattr(get_method(method), "result_settings", lambda p: ())(method_params))
    return tuple(k for k in SPEED_KEYS if k not in keep)


_TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig))
_DATA_KEYS = tuple(f.name for f in fields(DataConfig) if f.name != "options")


# --------------------------------------------------------------------------- parsing values
def parse_value(text: str) -> Any:
    """``--set`` value: TOML-like literals (numbers, true/false, lists, dicts), else a string."""
    s = text.strip()
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("nan", "inf", "-inf", "+inf"):
        return float(low)
    if low == "null":
        return None
    try:
        return ast.literal_eval(s)
    except (ValueError, SyntaxError):
        return s


def parse_overrides(items, once: bool = False) -> dict[str, Any]:
    """``KEY=VALUE`` items as a dict (a later item wins). ``once`` (the CLI's ``--set``): the same key
    given twice with different values is refused instead."""
    if once:
        check_overrides_once(items)
    out = {}
    for item in items or ():
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r} (e.g. --set epochs=5)")
        key, value = item.split("=", 1)
        out[key.strip()] = parse_value(value)
    return out


def _coerce(value: Any, like: Any, key: str) -> Any:
    """Coerce an override to the type of the default it replaces."""
    if like is None or value is None:
        return value
    if isinstance(like, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} expects true or false, got {value!r}")
    if isinstance(like, int) and not isinstance(like, bool):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key} expects an integer, got {value!r}")
    if isinstance(like, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key} expects a number, got {value!r}")
    if isinstance(like, str) and not isinstance(value, str):
        return str(value)
    return value


# --------------------------------------------------------------------------- presets
def _apply_preset(target, section: str, values: dict, where: str, coerce: bool = True) -> None:
    """Set a preset table's ``train`` or ``data`` keys on ``target`` (unknown keys refused, naming
    the table; values coerced to the default's type unless ``coerce`` is off)."""
    known = _TRAIN_KEYS if section == "train" else _DATA_KEYS
    for k, v in values.items():
        if k not in known:
            raise ConfigError(f"{where}: unknown {section} key {k!r}")
        setattr(target, k, _coerce(v, getattr(target, k), f"{section}.{k}") if coerce else v)


def load_toml(package_path: str) -> dict:
    """Read ``mmbench/configs/<package_path>`` ({} if absent)."""
    ref = resources.files("mmbench.configs").joinpath(package_path)
    if not ref.is_file():
        return {}
    with ref.open("rb") as fh:
        return tomllib.load(fh)


def dataset_preset(dataset: str) -> dict:
    return load_toml(f"{dataset}.toml")


def method_settings_file(method: str):
    """The settings TOML of ``method``: the file its class (or the class it inherits it from)
    names in ``settings_toml``, a path relative to the module that declares it (the built-in
    methods' sit beside their modules, ``mmbench/methods/<name>.toml``), else ``configs/methods/<method>.toml`` when it
    exists (the folder of earlier releases), else None."""
    from mmbench.benchmark.registry import get_method

    cls = get_method(method)
    owner = next((k for k in cls.__mro__ if k.__dict__.get("settings_toml")), None)
    if owner is not None and owner is not cls and owner.__module__.startswith("mmbench.") \
            and not cls.__module__.startswith("mmbench."):
        owner = None  # a plugin subclassing a built-in method does not inherit its settings
    if owner is not None:
        path = Path(inspect.getfile(owner)).parent / owner.settings_toml
        if not path.is_file():
            raise ConfigError(f"{owner.__module__}.{owner.__qualname__}.settings_toml: {path} does not exist")
        return path
    ref = resources.files("mmbench.configs").joinpath(f"methods/{method}.toml")
    return ref if ref.is_file() else None


def method_settings_label(method: str) -> str:
    """How messages name ``method``'s settings TOML (``mmbench/methods/pmr.toml``)."""
    path = method_settings_file(method)
    if path is None:
        return f"the settings of {method}"
    parts = Path(str(path)).parts
    return "/".join(parts[len(parts) - 1 - parts[::-1].index("mmbench"):]) if "mmbench" in parts else str(path)


def method_preset(method: str) -> dict:
    """The parsed settings TOML of ``method`` (``method_settings_file``; {} when it has none)."""
    path = method_settings_file(method)
    if path is None:
        return {}
    with path.open("rb") as fh:
        return tomllib.load(fh)


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _set_nested(d: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = value


def _get_nested(d: dict, dotted: str) -> Any:
    for p in dotted.split("."):
        d = d[p]
    return d


def _slug(value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:g}"
    text = re.sub(r"[^A-Za-z0-9.+-]+", "_", str(value)).strip("_")
    return text or "x"


def auto_tag(method_cls, changed: dict[str, Any], params: dict | None = None) -> str | None:
    """Readable tag naming non-default overrides, e.g. ``lr0.05_smoothing0.5``.

    Keys listed in the method's ``tag_keys`` show their value only (``unimodal-fourier``)."""
    parts = []
    tag_keys = getattr(method_cls, "tag_keys", ())
    keep = set(getattr(method_cls, "result_settings", lambda p: ())(params or {}))
    changed = {k: v for k, v in changed.items() if k not in SPEED_KEYS or k in keep}
    for key in sorted(changed, key=lambda k: (k.split(".")[-1] not in tag_keys, k.split(".")[-1], k)):
        short = key.split(".")[-1]
        if key.startswith("method.") and short in tag_keys:
            parts.append(_slug(changed[key]))
        else:
            parts.append(f"{short}{_slug(changed[key])}")
    return "_".join(parts) if parts else None


def resolve_config(
    dataset: str,
    method: str,
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
    tag: str | None = None,
    device: str = "auto",
) -> RunConfig:
    """Build the fully resolved ``RunConfig`` of one run (validated against the registries)."""
    from mmbench.benchmark.registry import get_dataset, get_method, require_names

    require_names(dataset=dataset, method=method)  # a typo is refused before torch is imported
    spec = get_dataset(dataset)
    method_cls = get_method(method)
    overrides = dict(overrides or {})

    cfg = RunConfig(dataset=dataset, method=method, seed=seed, device=device)
    sources: dict[str, str] = {}

    # 2. the dataset's shared setup
    dpre = dataset_preset(dataset)
    _apply_preset(cfg.train, "train", dpre.get("train", {}), f"configs/{dataset}.toml [train]")
    _apply_preset(cfg.data, "data", dpre.get("data", {}), f"configs/{dataset}.toml [data]", coerce=False)
    sources.update(dpre.get("sources", {}))

    # protocol and preset come first: they decide which other defaults apply
    defaults_before = {"protocol": cfg.protocol, "data.preset": cfg.data.preset}
    protocol = overrides.get("protocol", cfg.protocol)
    if protocol not in ("shared", "official"):
        raise ConfigError(f"protocol must be 'shared' or 'official', got {protocol!r}")
    cfg.protocol = protocol
    preset = overrides.get("data.preset", cfg.data.preset)
    presets = spec.presets()
    if preset not in presets:
        raise ConfigError(f"dataset {dataset!r} has no data preset {preset!r}; valid: {', '.join(presets)}")
    cfg.data.preset = preset
    cfg.data.options = copy.deepcopy(presets[preset])

    # 3. the method's per-dataset settings
    hyper_defaults = asdict(method_cls.Hyper())
    params = copy.deepcopy(hyper_defaults)
    mpre = method_preset(method)
    for k, v in mpre.get("datasets", {}).get(dataset, {}).items():
        if k not in params:
            raise ConfigError(f"{method_settings_label(method)}: unknown {method} hyper-parameter {k!r}")
        params[k] = v
    for k, v in mpre.get("sources", {}).get(dataset, {}).items():
        sources[f"method.{k}"] = v
    if protocol == "official":
        _apply_official(cfg, params, sources, mpre, method, dataset)

    if preset == SMOKE_PRESET and not {"epochs", "train.epochs"} & set(overrides):
        cfg.train.epochs = min(cfg.train.epochs, SMOKE_EPOCHS)
        sources["train.epochs"] = f"data.preset={SMOKE_PRESET}: at most {SMOKE_EPOCHS} epochs unless epochs is set"

    # 4. user overrides
    changed: dict[str, Any] = {}
    for key, value in overrides.items():
        before = _apply_override(cfg, params, spec, method_cls, key, value)
        before = defaults_before.get(key, before)  # applied above, before the other defaults
        after = _current(cfg, params, key)
        if before != after and not (
            isinstance(before, float) and isinstance(after, float) and math.isnan(before) and math.isnan(after)
        ):
            changed[_canonical(key)] = after
            sources[_canonical(key)] = f"[set] --set {key}={value!r}"
    if cfg.data.drop_missing is None:
        cfg.data.drop_missing = spec.drop_missing_default
    cfg.method_params = params
    cfg.overrides = overrides
    cfg.sources = sources
    names.check_tag(tag)  # one path-safe folder-name part, before anything is written
    cfg.tag = tag if tag else names.short_auto_tag(auto_tag(method_cls, changed, params))
    method_cls.validate_params(params, spec)
    check_settings(cfg, method_cls)
    method_cls.validate_config(cfg, spec)
    check_feasible(cfg, spec)
    return cfg


def _apply_official(cfg: RunConfig, params: dict, sources: dict, mpre: dict, method: str, dataset: str) -> None:
    """``protocol = "official"``: the harness's ``PROTOCOL_DEFAULTS``, then the method's
    ``[official.<dataset>]`` tables ``train``, ``data`` and ``method``; ``sources`` keys are
    ``train`` keys, or dotted (``method.alpha``, ``data.val_fraction``)."""
    official = mpre.get("official", {}).get(dataset)
    if official is None:
        raise ConfigError(f"method {method!r} publishes no training setup for {dataset!r}; use protocol=shared")
    for dotted, (value, source) in PROTOCOL_DEFAULTS["official"].items():
        section, name = dotted.split(".")
        setattr(getattr(cfg, section), name, value)
        sources[dotted] = source
    where = f"{method_settings_label(method)} [official.{dataset}"
    _apply_preset(cfg.train, "train", official.get("train", {}), f"{where}.train]")
    _apply_preset(cfg.data, "data", official.get("data", {}), f"{where}.data]")
    for k, v in official.get("method", {}).items():
        if k not in params:
            raise ConfigError(f"{method_settings_label(method)} [official.{dataset}.method]: unknown key {k!r}")
        params[k] = _coerce(v, params[k], f"method.{k}")
    for k, v in official.get("sources", {}).items():
        sources[k if "." in k else f"train.{k}"] = v


def _canonical(key: str) -> str:
    if key in _TRAIN_KEYS:
        return f"train.{key}"
    return key


def _current(cfg: RunConfig, params: dict, key: str) -> Any:
    key = _canonical(key)
    if key in TOP_LEVEL_KEYS:
        return getattr(cfg, key)
    section, _, rest = key.partition(".")
    if section == "train":
        return getattr(cfg.train, rest)
    if section == "method":
        return params[rest]
    if rest in _DATA_KEYS:
        return getattr(cfg.data, rest)
    return _get_nested(cfg.data.options, rest)


def valid_keys(spec, method_cls) -> list[str]:
    keys = list(TOP_LEVEL_KEYS) + list(_TRAIN_KEYS)
    keys += [f"data.{k}" for k in _DATA_KEYS]
    presets = spec.presets()
    options = presets.get("paper") or next(iter(presets.values()), {})
    keys += [f"data.{k}" for k in _flatten(options)]
    keys += [f"method.{f.name}" for f in dataclasses.fields(method_cls.Hyper)]
    return keys


def _apply_override(cfg: RunConfig, params: dict, spec, method_cls, key: str, value: Any) -> Any:
    """Apply one override in place; return the value it replaced."""
    ckey = _canonical(key)
    bad = ConfigError(
        f"unknown --set key {key!r}; valid keys: {', '.join(valid_keys(spec, method_cls))}"
    )
    if ckey in TOP_LEVEL_KEYS:
        before = getattr(cfg, ckey)
        if ckey == "select_tie" and value not in ("first", "last"):
            raise ConfigError("select_tie must be 'first' or 'last'")
        setattr(cfg, ckey, value)
        return before
    section, _, rest = ckey.partition(".")
    if section == "train":
        if rest not in _TRAIN_KEYS:
            raise bad
        before = getattr(cfg.train, rest)
        setattr(cfg.train, rest, _coerce(value, before, ckey))
        return before
    if section == "method":
        if rest not in params:
            raise ConfigError(
                f"unknown --set key {key!r}; {method_cls.name} hyper-parameters: "
                + ", ".join(f"method.{k}" for k in params)
            )
        before = params[rest]
        params[rest] = _coerce(value, before, ckey)
        return before
    if section == "data":
        if rest in _DATA_KEYS:
            before = getattr(cfg.data, rest)
            setattr(cfg.data, rest, _coerce(value, before, ckey) if before is not None else value)
            return before
        try:
            before = _get_nested(cfg.data.options, rest)
        except (KeyError, TypeError):
            raise bad from None
        _set_nested(cfg.data.options, rest, _coerce(value, before, ckey))
        return before
    raise bad


# --------------------------------------------------------------------------- provenance
_TAG = re.compile(r"\[(code|paper|guess|shared)[^\]]*\]")


def hyper_comments(method_cls) -> dict[str, str]:
    """The comment after each field of the method's ``Hyper`` dataclass (its default's source)."""
    try:
        text = inspect.getsource(method_cls.Hyper)
    except (OSError, TypeError):
        return {}
    out = {}
    for line in text.splitlines():
        m = re.match(r"\s+(\w+)\s*:[^=#]*=[^#]*#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def value_sources(cfg: RunConfig) -> dict[str, str]:
    """Where every resolved value of ``cfg`` comes from, by dotted key (``train.lr``,
    ``method.alpha``, ``data.options.audio.seconds``, ``protocol``): the recorded source
    (``cfg.sources``: ``[code] repo path``, ``[paper] ...``, ``[guess] ...``, ``[set] --set``),
    else the file or default it was read from."""
    from mmbench.benchmark.registry import get_dataset, get_method

    method_cls = get_method(cfg.method)
    dpre = dataset_preset(cfg.dataset)
    mpre = method_preset(cfg.method)
    label = method_settings_label(cfg.method)
    official = mpre.get("official", {}).get(cfg.dataset, {}) if cfg.protocol == "official" else {}
    comments = hyper_comments(method_cls)
    out: dict[str, str] = {}
    for key in TOP_LEVEL_KEYS:
        out[key] = "[shared] mmbench default (benchmark/config.py RunConfig)"
    for section, keys in (("train", _TRAIN_KEYS), ("data", _DATA_KEYS)):
        for k in keys:
            if k in official.get(section, {}):
                where = f"[guess] {label} [official.{cfg.dataset}.{section}], no source given"
            elif k in dpre.get(section, {}):
                where = f"[shared] configs/{cfg.dataset}.toml [{section}]"
            else:
                where = "[shared] mmbench default (benchmark/config.py)"
            if f"{section}.{k}" in SPEED_KEYS:
                where += "; speed only, not in the identity"
            out[f"{section}.{k}"] = where
    presets_of = f"{type(get_dataset(cfg.dataset)).__module__}.presets"
    for k in _flatten(cfg.data.options):
        out[f"data.options.{k}"] = f"[shared] data preset {cfg.data.preset!r} of {cfg.dataset} ({presets_of})"
    for k in cfg.method_params:
        if k in official.get("method", {}):
            where = f"[guess] {label} [official.{cfg.dataset}.method], no source given"
        elif k in mpre.get("datasets", {}).get(cfg.dataset, {}):
            where = f"[guess] {label} [datasets.{cfg.dataset}], no source given"
        else:
            note = comments.get(k, "")
            tag = _TAG.search(note)
            note = _TAG.sub("", note, count=1).strip(" ;:") if tag else note
            where = f"{tag.group(0) if tag else '[default]'} {method_cls.__module__} default" + (f": {note}" if note else "")
        out[f"method.{k}"] = where
    for key, source in cfg.sources.items():
        out[key if not key.startswith("data.") or key[5:] in _DATA_KEYS else f"data.options.{key[5:]}"] = source
    return out
