"""Built-in methods: every module in this package registers itself with ``@register_method``.

Modules are imported automatically, so adding a method is adding one file.
"""

import importlib
import pkgutil

from mmbench.methods.base import Method, Optimizers

_SKIP = {"base", "heads"}

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in _SKIP and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["Method", "Optimizers"]
