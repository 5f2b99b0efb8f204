"""The one registry of methods and datasets (timm-style: a decorator and a factory per kind).

Built-in methods register with ``@register_method`` when their module is imported: on first use
of the name (``BUILTIN_METHODS`` / ``BUILTIN_DATASETS`` map names to modules, so looking a name
up, or refusing a typo, imports no torch), or all at once when a listing needs them;
third-party packages expose classes in the entry-point group ``mmbench.methods``
(``[project.entry-points."mmbench.methods"] name = "package.module:Class"``). Entry points are
loaded in a fixed order (distribution name, entry-point name), after every built-in method, so a
plugin can never replace a built-in one. A broken plugin (import error, wrong base class, a
``Hyper`` that is not a dataclass with defaults, an entry-point name that differs from the class's
``name``, a duplicate name) is recorded in ``plugin_errors()`` with its package and version and
never stops the built-in methods, or the other plugins, from working. Datasets work the same way
(``mmbench.datasets``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib
from dataclasses import dataclass
from importlib import metadata

from mmbench.errors import MMBenchError

METHOD_ENTRY_POINT = "mmbench.methods"
DATASET_ENTRY_POINT = "mmbench.datasets"

# Built-in names and the module that registers each: a name is found (or refused) without
# importing torch; the module is imported on first use (tests check these tables against what the
# modules register).
BUILTIN_METHODS = {name: f"mmbench.methods.{name}" for name in (
    "agm", "di_mml", "dnr", "gblend", "inforeg", "joint", "lfm", "mla", "mmpareto", "mslr", "ogm_ge", "pmr", "reconboost", "sustained_boost",
    "unimodal", "valuation",
)}
BUILTIN_DATASETS = {
    "cremad": "mmbench.datasets.cremad",
    "kinetics_sounds": "mmbench.datasets.kinetics_sounds",
    "mfeat": "mmbench.datasets.mfeat",
    "mfeat3": "mmbench.datasets.mfeat",
    "nvgesture": "mmbench.datasets.nvgesture",
    "sarcasm": "mmbench.datasets.sarcasm",
    "twitter15": "mmbench.datasets.twitter15",
    "vggsound": "mmbench.datasets.vggsound",
}

_METHODS: dict[str, type] = {}
_METHOD_ORIGIN: dict[str, str] = {}
_BUILTIN: set[str] = set()
_DATASETS: dict[str, object] = {}
_DATASET_ORIGIN: dict[str, str] = {}
_PLUGIN_ERRORS: list[PluginError] = []
_loaded = False


@dataclass(frozen=True)
class PluginError:
    """One entry point that could not be registered: its name, package and why."""

    kind: str  # "method" | "dataset"
    name: str  # the entry-point name
    package: str  # "<distribution> <version>"
    message: str

    def __str__(self) -> str:
        return f"{self.name} ({self.package}): {self.message}"


def _origin(cls) -> str:
    """``"<distribution> <version>"`` that ships ``cls``'s module (``mmbench <version>`` for the
    built-in methods), or ``"<module> (not installed)"``."""
    top = cls.__module__.split(".")[0]
    if top == "mmbench":
        from mmbench import __version__

        return f"mmbench {__version__}"
    for dist in metadata.packages_distributions().get(top, []):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return f"{cls.__module__} (not installed)"


def register_method(cls):
    """Class decorator: make a ``Method`` subclass available under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not name:
        raise TypeError(f"{cls.__qualname__} has no `name`")
    if name in _METHODS and _METHODS[name] is not cls:
        raise ValueError(f"method name {name!r} is already registered by {_METHODS[name].__module__}")
    _METHODS[name] = cls
    _METHOD_ORIGIN[name] = _origin(cls)
    if cls.__module__.startswith("mmbench."):
        _BUILTIN.add(name)
    return cls


def method_class_problems(cls) -> list[str]:
    """What makes ``cls`` unusable as a method, as sentences (empty when it is fine): it must be
    a ``Method`` subclass with a non-empty ``name`` and a dataclass ``Hyper`` whose every field
    has a default (``resolve_config`` instantiates ``Hyper()`` to know the defaults)."""
    from mmbench.methods.base import Method

    if not (isinstance(cls, type) and issubclass(cls, Method)):
        what = cls.__qualname__ if isinstance(cls, type) else type(cls).__name__
        return [f"{what} is not a subclass of mmbench.methods.base.Method"]
    problems = []
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        problems.append(f"{cls.__qualname__} has no `name` (a non-empty class attribute)")
    hyper = getattr(cls, "Hyper", None)
    if not (isinstance(hyper, type) and dataclasses.is_dataclass(hyper)):
        problems.append(f"{cls.__qualname__}.Hyper is not a dataclass")
    else:
        try:
            hyper()
        except Exception as exc:  # noqa: BLE001 - any failure means "no usable defaults"
            problems.append(f"{cls.__qualname__}.Hyper() fails ({exc}): give every field a default")
    return problems


def _qualified(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_dataset(spec):
    """Register a ``DatasetSpec`` instance (or a zero-argument factory returning one). A name
    already taken by another spec class is refused (``ValueError``), as for methods; the same
    class again (a re-imported module, a second instance such as mfeat's) replaces it."""
    if callable(spec) and not hasattr(spec, "name"):
        spec = spec()
    present = _DATASETS.get(spec.name)
    if present is not None and _qualified(type(present)) != _qualified(type(spec)):
        raise ValueError(
            f"dataset name {spec.name!r} is already registered by {_qualified(type(present))} "
            f"({_DATASET_ORIGIN[spec.name]}): choose another name"
        )
    _DATASETS[spec.name] = spec
    _DATASET_ORIGIN[spec.name] = _origin(type(spec))
    return spec


def _load_builtins() -> None:
    """Import every built-in method and dataset module, then the plugins (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in sorted(set(BUILTIN_METHODS.values()) | set(BUILTIN_DATASETS.values())):
        importlib.import_module(module)
    _load_method_plugins()
    _load_dataset_plugins()


def _load_one(kind: str, name: str) -> None:
    """Make ``name`` registered as cheaply as possible: a built-in imports only its own module;
    a plugin name (or an unknown one that is not a built-in) loads everything."""
    table, registered = (BUILTIN_METHODS, _METHODS) if kind == "method" else (BUILTIN_DATASETS, _DATASETS)
    if name in registered:
        return
    if name in table and not _loaded:
        importlib.import_module(table[name])
        if name in registered:
            return
    _load_builtins()


def require_names(dataset: str | None = None, method: str | None = None) -> None:
    """Refuse an unknown dataset or method name before anything heavy is imported: the names
    are the built-in tables and the entry-point names (nothing is loaded for that)."""
    for kind, name, table, group in (("dataset", dataset, BUILTIN_DATASETS, DATASET_ENTRY_POINT),
                                     ("method", method, BUILTIN_METHODS, METHOD_ENTRY_POINT)):
        if name is None or name in table:
            continue
        plugins = {ep.name for ep in _entry_points(group)}
        registered = _METHODS if kind == "method" else _DATASETS
        if name not in plugins and name not in registered:
            raise _unknown(kind, name, set(table) | plugins | set(registered))


def _entry_points(group: str):
    try:
        return list(metadata.entry_points(group=group))
    except Exception:  # pragma: no cover - broken metadata
        return []


def _dist_label(ep) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown package"
    return f"{dist.name} {dist.version}"


def _sorted_entry_points(group: str):
    return sorted(_entry_points(group), key=lambda ep: (_dist_label(ep).lower(), ep.name))


def _load_method_plugins() -> None:
    for ep in _sorted_entry_points(METHOD_ENTRY_POINT):
        package = _dist_label(ep)

        def broken(message: str, ep=ep, package=package) -> None:
            _PLUGIN_ERRORS.append(PluginError("method", ep.name, package, message))

        try:
            cls = ep.load()
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a plugin may fail in any way
            broken(f"cannot import {ep.value}: {type(exc).__name__}: {exc}")
            continue
        problems = method_class_problems(cls)
        if problems:
            broken(f"{ep.value}: " + "; ".join(problems))
            continue
        if cls.name != ep.name:
            broken(f"entry-point name {ep.name!r} differs from {ep.value}.name {cls.name!r}; make them equal")
            continue
        if cls.name in _METHODS and _METHODS[cls.name] is not cls:
            broken(f"duplicate method name {cls.name!r}: already provided by {_METHOD_ORIGIN[cls.name]}")
            continue
        _METHODS[cls.name] = cls
        _METHOD_ORIGIN[cls.name] = package


def _load_dataset_plugins() -> None:
    for ep in _sorted_entry_points(DATASET_ENTRY_POINT):
        try:
            register_dataset(ep.load())
        except (Exception, SystemExit) as exc:  # noqa: BLE001
            _PLUGIN_ERRORS.append(
                PluginError("dataset", ep.name, _dist_label(ep), f"{type(exc).__name__}: {exc}")
            )


def _unknown(kind: str, name: str, known) -> MMBenchError:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return MMBenchError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(known)}.{hint}")


def get_method(name: str) -> type:
    """The registered ``Method`` class called ``name``."""
    _load_one("method", name)
    if name not in _METHODS:
        errors = [str(e) for e in _PLUGIN_ERRORS if e.kind == "method" and e.name == name]
        if errors:
            raise MMBenchError(
                f"method {name!r} is a broken plugin: {'; '.join(errors)} (see `mmbench list methods`)"
            )
        raise _unknown("method", name, _METHODS)
    return _METHODS[name]


def get_dataset(name: str):
    """The registered ``DatasetSpec`` called ``name``."""
    _load_one("dataset", name)
    if name not in _DATASETS:
        raise _unknown("dataset", name, _DATASETS)
    return _DATASETS[name]


def method_names() -> list[str]:
    _load_builtins()
    return sorted(_METHODS)


def dataset_names() -> list[str]:
    _load_builtins()
    return sorted(_DATASETS)


def builtin_method_names() -> list[str]:
    """The methods shipped in ``mmbench.methods`` (not plugins)."""
    _load_builtins()
    return sorted(_BUILTIN)


def method_origin(name: str) -> str:
    """``"<package> <version>"`` of the distribution that provides method ``name``."""
    _load_builtins()
    return _METHOD_ORIGIN.get(name, "?")


def dataset_origin(name: str) -> str:
    """``"<package> <version>"`` of the distribution that provides dataset ``name``."""
    _load_builtins()
    return _DATASET_ORIGIN.get(name, "?")


def plugin_failures(kind: str | None = None) -> list[PluginError]:
    """Every entry point that could not be registered (of ``kind`` if given), in load order."""
    _load_builtins()
    return [e for e in _PLUGIN_ERRORS if kind is None or e.kind == kind]


def plugin_errors() -> dict[str, str]:
    """``{entry-point name: "name (package version): why"}`` of the broken plugins; dataset
    plugins are keyed ``dataset:<name>``; two broken entries of one name share a line."""
    out: dict[str, str] = {}
    for e in plugin_failures():
        key = e.name if e.kind == "method" else f"dataset:{e.name}"
        out[key] = f"{out[key]}; {e}" if key in out else str(e)
    return out


@contextlib.contextmanager
def registered_method(cls):
    """Make ``cls`` available under ``cls.name`` inside the block (the conformance kit uses it
    for a method that is not installed as an entry point); restores the registry after."""
    _load_builtins()
    problems = method_class_problems(cls)
    if problems:
        raise MMBenchError("; ".join(problems))
    present = _METHODS.get(cls.name)
    if present is not None and present is not cls:
        raise MMBenchError(
            f"method name {cls.name!r} is already taken by {present.__module__}.{present.__qualname__} "
            f"({_METHOD_ORIGIN[cls.name]}): choose another name"
        )
    if present is cls:
        yield cls
        return
    _METHODS[cls.name] = cls
    _METHOD_ORIGIN[cls.name] = _origin(cls)
    try:
        yield cls
    finally:
        _METHODS.pop(cls.name, None)
        _METHOD_ORIGIN.pop(cls.name, None)
