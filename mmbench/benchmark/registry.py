"""Methods and datasets by name, for the harness and the commands: the functions below read the
two registries (``mmbench.methods.registry.METHODS``, ``mmbench.datasets.registry.DATASETS``,
both a ``mmbench.results.registry.Registry``).

``register_method`` and ``register_dataset`` stay importable from here for plugins written
against this module; built-in methods and datasets import them from their own package's
``registry`` module.
"""

from __future__ import annotations

from mmbench.datasets.registry import BUILTIN_DATASETS, DATASET_ENTRY_POINT, DATASETS, register_dataset
from mmbench.methods.registry import (
    BUILTIN_METHODS,
    METHOD_ENTRY_POINT,
    METHODS,
    method_class_problems,
    register_method,
)
from mmbench.results.registry import PluginError

__all__ = [
    "BUILTIN_DATASETS",
    "BUILTIN_METHODS",
    "DATASETS",
    "DATASET_ENTRY_POINT",
    "METHODS",
    "METHOD_ENTRY_POINT",
    "PluginError",
    "builtin_method_names",
    "dataset_names",
    "dataset_origin",
    "get_dataset",
    "get_method",
    "method_class_problems",
    "method_names",
    "method_origin",
    "plugin_errors",
    "plugin_failures",
    "register_dataset",
    "register_method",
    "registered_method",
    "require_names",
]


def require_names(dataset: str | None = None, method: str | None = None) -> None:
    """Refuse an unknown dataset or method name before anything heavy is imported: the names
    are the built-in tables and the entry-point names (nothing is loaded for that)."""
    for registry, name in ((DATASETS, dataset), (METHODS, method)):
        if name is not None and not registry.known_without_loading(name):
            raise registry.unknown(name)


def get_method(name: str) -> type:
    """The registered ``Method`` class called ``name``."""
    return METHODS.get(name)


def get_dataset(name: str):
    """The registered ``DatasetSpec`` called ``name``."""
    return DATASETS.get(name)


def method_names() -> list[str]:
    return METHODS.names()


def dataset_names() -> list[str]:
    return DATASETS.names()


def builtin_method_names() -> list[str]:
    """The methods shipped in ``mmbench.methods`` (not plugins)."""
    return METHODS.builtin_names()


def method_origin(name: str) -> str:
    """``"<package> <version>"`` of the distribution that provides method ``name``."""
    return METHODS.origin(name)


def dataset_origin(name: str) -> str:
    """``"<package> <version>"`` of the distribution that provides dataset ``name``."""
    return DATASETS.origin(name)


def plugin_failures(kind: str | None = None) -> list[PluginError]:
    """Every entry point that could not be registered (of ``kind`` if given), methods first."""
    return [e for e in [*METHODS.failures(), *DATASETS.failures()] if kind is None or e.kind == kind]


def plugin_errors() -> dict[str, str]:
    """``{entry-point name: "name (package version): why"}`` of the broken plugins; dataset
    plugins are keyed ``dataset:<name>``; two broken entries of one name share a line."""
    out: dict[str, str] = {}
    for e in plugin_failures():
        key = e.name if e.kind == "method" else f"dataset:{e.name}"
        out[key] = f"{out[key]}; {e}" if key in out else str(e)
    return out


def registered_method(cls):
    """Make ``cls`` available under ``cls.name`` inside the block (the conformance kit uses it
    for a method that is not installed as an entry point); restores the registry after."""
    return METHODS.registered(cls)
