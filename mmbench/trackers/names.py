"""The logger names of ``--logger`` / ``train.loggers`` and their optional packages.

Light on purpose: ``config_checks.check_settings`` calls ``check_loggers`` for every resolved
config, so a missing package is refused in one line before anything is written. Nothing here
imports a tracker library (``importlib.util.find_spec`` only looks the package up).
"""

from __future__ import annotations

import importlib.util

from mmbench.results.errors import ConfigError

# name -> (module that must be importable, what to install)
LOGGERS = {
    "tensorboard": ("tensorboard", "pip install 'mmbench[tensorboard]'  (or: pip install tensorboard)"),
    "wandb": ("wandb", "pip install 'mmbench[wandb]'  (or: pip install wandb)"),
    "mlflow": ("mlflow", "pip install 'mmbench[mlflow]'  (or: pip install mlflow)"),
    "csv": (None, ""),
}


def logger_names(value) -> tuple[str, ...]:
    """``train.loggers`` as a tuple of names: a list, one name, or a comma-separated string
    (``--set train.loggers=tensorboard,csv`` or ``=[tensorboard,csv]``); duplicates dropped,
    order kept."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        items = [v.strip().strip("'\"") for v in value.strip().strip("[]").split(",")]
    elif isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value]
    else:
        raise ConfigError(f"train.loggers must be a list of names, got {value!r}: e.g. --logger tensorboard")
    return tuple(dict.fromkeys(v for v in items if v))


def check_loggers(value) -> tuple[str, ...]:
    """The names of ``value``; an unknown name or a missing package raises one ``ConfigError``
    that says what to install."""
    names = logger_names(value)
    for name in names:
        if name not in LOGGERS:
            raise ConfigError(f"unknown logger {name!r}; choose from {', '.join(LOGGERS)}")
        module, pip = LOGGERS[name]
        if module is not None and importlib.util.find_spec(module) is None:
            raise ConfigError(f"the {name} logger needs the {module} package, which is not installed: {pip}")
    return names
