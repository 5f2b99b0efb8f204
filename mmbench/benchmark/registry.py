"""The one registry of methods and datasets (timm-style: a decorator and a factory per kind).

Built-in methods register with ``@register_method`` when ``mmbench.methods`` is imported;
third-party packages expose classes in the entry-point group ``mmbench.methods``. A broken plugin
(import error, wrong base class, duplicate name) is recorded in ``plugin_errors()`` and never
stops the built-in methods from working. Datasets work the same way (``mmbench.datasets``).
"""

from __future__ import annotations

import difflib
from importlib import metadata

from mmbench.errors import MMBenchError

METHOD_ENTRY_POINT = "mmbench.methods"
DATASET_ENTRY_POINT = "mmbench.datasets"

_METHODS: dict[str, type] = {}
_METHOD_ORIGIN: dict[str, str] = {}
_DATASETS: dict[str, object] = {}
_PLUGIN_ERRORS: dict[str, str] = {}
_loaded = False


def register_method(cls):
    """Class decorator: make a ``Method`` subclass available under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not name:
        raise TypeError(f"{cls.__qualname__} has no `name`")
    if name in _METHODS and _METHODS[name] is not cls:
        raise ValueError(f"method name {name!r} is already registered by {_METHODS[name].__module__}")
    _METHODS[name] = cls
    _METHOD_ORIGIN.setdefault(name, "mmbench (built-in)")
    return cls


def register_dataset(spec):
    """Register a ``DatasetSpec`` instance (or a zero-argument factory returning one)."""
    if callable(spec) and not hasattr(spec, "name"):
        spec = spec()
    _DATASETS[spec.name] = spec
    return spec


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import mmbench.datasets  # noqa: F401  (registers built-in datasets)
    import mmbench.methods  # noqa: F401  (registers built-in methods)

    _load_method_plugins()
    _load_dataset_plugins()


def _entry_points(group: str):
    try:
        return list(metadata.entry_points(group=group))
    except Exception:  # pragma: no cover - broken metadata
        return []


def _load_method_plugins() -> None:
    from mmbench.methods.base import Method

    for ep in _entry_points(METHOD_ENTRY_POINT):
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        label = f"{ep.name} ({dist} {version})"
        try:
            cls = ep.load()
        except Exception as exc:  # noqa: BLE001 - a plugin may fail in any way
            _PLUGIN_ERRORS[ep.name] = f"{label}: import failed: {type(exc).__name__}: {exc}"
            continue
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            _PLUGIN_ERRORS[ep.name] = f"{label}: {ep.value} is not a subclass of mmbench.methods.base.Method"
            continue
        name = getattr(cls, "name", None) or ep.name
        if name in _METHODS and _METHODS[name] is not cls:
            _PLUGIN_ERRORS[name] = (
                f"{label}: duplicate method name {name!r} (already provided by {_METHOD_ORIGIN[name]})"
            )
            continue
        cls.name = name
        _METHODS[name] = cls
        _METHOD_ORIGIN[name] = f"{dist} {version}"


def _load_dataset_plugins() -> None:
    for ep in _entry_points(DATASET_ENTRY_POINT):
        try:
            register_dataset(ep.load())
        except Exception as exc:  # noqa: BLE001
            _PLUGIN_ERRORS[f"dataset:{ep.name}"] = f"{ep.name}: {type(exc).__name__}: {exc}"


def _unknown(kind: str, name: str, known) -> MMBenchError:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return MMBenchError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(known)}.{hint}")


def get_method(name: str) -> type:
    """The registered ``Method`` class called ``name``."""
    _load_builtins()
    if name not in _METHODS:
        if name in _PLUGIN_ERRORS:
            raise MMBenchError(f"method {name!r} is a broken plugin: {_PLUGIN_ERRORS[name]}")
        raise _unknown("method", name, _METHODS)
    return _METHODS[name]


def get_dataset(name: str):
    """The registered ``DatasetSpec`` called ``name``."""
    _load_builtins()
    if name not in _DATASETS:
        raise _unknown("dataset", name, _DATASETS)
    return _DATASETS[name]


def method_names() -> list[str]:
    _load_builtins()
    return sorted(_METHODS)


def dataset_names() -> list[str]:
    _load_builtins()
    return sorted(_DATASETS)


def method_origin(name: str) -> str:
    _load_builtins()
    return _METHOD_ORIGIN.get(name, "?")


def plugin_errors() -> dict[str, str]:
    _load_builtins()
    return dict(_PLUGIN_ERRORS)
