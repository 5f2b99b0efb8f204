"""Built-in datasets: each module that defines a ``DatasetSpec`` registers it with
``register_dataset`` when imported.

Nothing is imported here (so name look-ups and ``mmbench data prepare`` workers need no torch):
the registry (``mmbench.datasets.registry.BUILTIN_DATASETS``) imports a dataset's module on
first use.
"""

_LAZY = {"DatasetSpec": "mmbench.datasets.base", "Problem": "mmbench.datasets.base"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmbench.datasets' has no attribute {name!r}")


__all__ = ["DatasetSpec", "Problem"]
