"""Range checks of a resolved ``RunConfig``: a bad setting is refused before anything is written.

``check_settings(cfg, method_cls)`` is called at the end of ``config.resolve_config`` (so
``run``, ``sweep``, ``sweep --dry-run`` and the SLURM launcher all refuse it before the first
record) and raises one ``ConfigError`` whose line names the key, the value and the valid range.

Checked: positive counts (epochs, batch sizes, threads, step size), a positive finite learning
rate, momentum in [0, 1), non-negative weight decay, positive gamma, fractions in [0, 1), the
choice-valued train keys, and each method's epoch windows (``Method.epoch_windows``: a window
must start inside the run and not end before it starts).
"""

from __future__ import annotations

import math

from mmbench.results.errors import ConfigError
from mmbench.trackers.names import check_loggers

CHOICES = {
    "train.optimizer": ("sgd", "adam", "adamw", "adagrad"),
    "train.schedule": ("step", "constant"),
    "train.step_at": ("epoch_start", "epoch_end"),
    "train.amp": ("auto", "bf16", "off"),
}


def _number(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}: fix it with --set {key}=VALUE")
    return value


def _refuse(key: str, value, rule: str) -> None:
    raise ConfigError(f"{key} must be {rule}, got {value!r}: fix it with --set {key}=VALUE")


def _at_least(key: str, value, low) -> None:
    if _number(key, value) < low:
        _refuse(key, value, f">= {low}")


def _fraction(key: str, value) -> None:
    if not 0 <= _number(key, value) < 1:
        _refuse(key, value, "in [0, 1)")


def check_train(tr) -> None:
    """The shared training setup (``train.*``)."""
    for name in ("epochs", "batch_size", "eval_batch_size", "threads", "step_size"):
        _at_least(f"train.{name}", getattr(tr, name), 1)
    if _number("train.lr", tr.lr) <= 0:
        _refuse("train.lr", tr.lr, "> 0")
    if not 0 <= _number("train.momentum", tr.momentum) < 1:
        _refuse("train.momentum", tr.momentum, "in [0, 1)")
    _at_least("train.weight_decay", tr.weight_decay, 0)
    if _number("train.gamma", tr.gamma) <= 0:
        _refuse("train.gamma", tr.gamma, "> 0")
    betas = tr.betas
    if not (isinstance(betas, (list, tuple)) and len(betas) == 2 and all(0 <= _number("train.betas", b) < 1 for b in betas)):
        _refuse("train.betas", betas, "two numbers in [0, 1), e.g. [0.9, 0.999]")
    for key, valid in CHOICES.items():
        value = getattr(tr, key.split(".")[1])
        if value not in valid:
            _refuse(key, value, "one of " + ", ".join(valid))


def check_data_settings(data) -> None:
    """Harness data settings (``data.*``)."""
    _fraction("data.val_fraction", data.val_fraction)
    _at_least("data.split_seed", data.split_seed, 0)
    _at_least("data.num_workers", data.num_workers, -1)
    folds = getattr(data, "cv_folds", 0)
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 0 or folds == 1:
        _refuse("data.cv_folds", folds, "0 (off) or an integer >= 2")


def check_windows(params: dict, windows, epochs: int) -> None:
    """Each ``(start_key, end_key)`` of ``windows``: ``0 <= start < epochs`` (epochs counted from
    ``method.window_index_base`` where the method has one) and ``end >= start`` (-1 = to the end)."""
    base = int(params.get("window_index_base", 0) or 0)
    for start_key, end_key in windows:
        start, end = params[start_key], params[end_key]
        _at_least(f"method.{start_key}", start, 0)
        if start >= epochs + base:
            raise ConfigError(
                f"method.{start_key}={start} starts after the last epoch (train.epochs={epochs}): "
                f"the window would never apply; set method.{start_key} below {epochs + base} or raise epochs"
            )
        if _number(f"method.{end_key}", end) != -1 and end < start:
            _refuse(f"method.{end_key}", end, f">= method.{start_key} ({start})")


def check_settings(cfg, method_cls) -> None:
    """Every range check of a resolved config (raises one ``ConfigError``)."""
    check_train(cfg.train)
    check_data_settings(cfg.data)
    if cfg.data.cv_folds and cfg.protocol == "official":
        raise ConfigError(
            "data.cv_folds needs a validation split; protocol=official has none and is the paper's "
            "own setting: use protocol=shared"
        )
    check_windows(cfg.method_params, getattr(method_cls, "epoch_windows", ()), cfg.train.epochs)
    check_loggers(getattr(cfg.train, "loggers", ()))  # unknown name, or its package missing: one line


# --------------------------------------------------------------------------- feasibility
# the optimisers step float32 weights: a rate beyond float32's range (3.4e38) cannot be applied at all
# (torch raises an overflow deep in the step); a large but representable rate trains and fails
# cleanly with a non-finite loss that names it
MAX_LR = 1e38


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 1


def _finite_everywhere(key: str, value) -> None:
    """Every number inside a method hyper-parameter (lists too) is finite."""
    if isinstance(value, (list, tuple)):
        for v in value:
            _finite_everywhere(key, v)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}: fix it with --set {key}=VALUE")


def check_feasible(cfg, spec) -> None:
    """Settings that pass the range checks but cannot work: a negative seed, a learning rate that
    overflows, more threads than the machine has cores, a negative row limit, a non-finite method
    hyper-parameter, or a setting the dataset ignores (``DatasetSpec.ignored_settings``)."""
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ConfigError(f"seeds must be >= 0, got {cfg.seed!r}: use --seed-start 0 or above")
    if cfg.train.lr > MAX_LR:
        _refuse("train.lr", cfg.train.lr, f"<= {MAX_LR:g} (the float32 weights cannot take a larger step)")
    cores = _cpu_count()
    if cfg.train.threads > cores:
        _refuse("train.threads", cfg.train.threads, f"at most this machine's {cores} cores")
    limit = cfg.data.options.get("limit_train_per_class")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            _refuse("data.limit_train_per_class", limit, "an integer >= 0 (0 = every row)")
    for name, value in cfg.method_params.items():
        _finite_everywhere(f"method.{name}", value)
    ignored = getattr(spec, "ignored_settings", lambda c: {})(cfg)
    for key, why in ignored.items():
        if key in cfg.overrides:
            raise ConfigError(f"{key} has no effect on {cfg.dataset}: {why}; drop --set {key}")


def check_overrides_once(items) -> None:
    """The same ``--set`` key given twice with different values is refused (the last would win
    silently)."""
    seen: dict[str, str] = {}
    for item in items or ():
        if "=" not in item:
            continue
        key, value = (part.strip() for part in item.split("=", 1))
        canon = key.removeprefix("train.")
        if canon in seen and seen[canon] != value:
            raise ConfigError(f"--set {canon} is given twice ({seen[canon]} and {value}): keep one")
        seen[canon] = value


def nonfinite_hint(cfg) -> str:
    """What most likely made the loss non-finite: the settings changed from the defaults that act
    on the step size or the loss, else the learning rate."""
    changed = [k for k in (cfg.overrides or {}) if k.split(".")[-1] in _STEP_KEYS or k.startswith("method.")]
    shown = [f"{k}={cfg.overrides[k]!r}" for k in changed[:4]]
    if not shown:
        shown = [f"train.lr={cfg.train.lr:g} (the default)"]
    return (f"the settings most likely to cause it: {', '.join(shown)}; lower train.lr (or undo those overrides) "
            "and run with --rerun")


_STEP_KEYS = {"lr", "momentum", "weight_decay", "gamma", "batch_size", "amp", "betas", "optimizer", "schedule"}
