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

from mmbench.errors import ConfigError

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


def check_data(data) -> None:
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
    check_data(cfg.data)
    if cfg.data.cv_folds and cfg.protocol == "official":
        raise ConfigError(
            "data.cv_folds needs a validation split; protocol=official has none and is the paper's "
            "own setting: use protocol=shared"
        )
    check_windows(cfg.method_params, getattr(method_cls, "epoch_windows", ()), cfg.train.epochs)
