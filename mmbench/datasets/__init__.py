"""Built-in datasets: every module in this package that defines a ``DatasetSpec`` registers it
with ``register_dataset``. Modules are imported automatically."""

import importlib
import pkgutil

from mmbench.datasets.base import DatasetSpec, Problem

_SKIP = {"base", "fixtures"}

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in _SKIP and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["DatasetSpec", "Problem"]
