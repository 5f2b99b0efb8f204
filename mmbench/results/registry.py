"""One generic registry type, ``Registry[T]``, for methods, datasets, table layouts and figures
(the shape of lm-eval's ``lm_eval/api/registry.py`` and timm's ``timm/models/_registry.py``).

A registry maps names to objects of one kind. Names match ``^[a-z][a-z0-9_]*$`` (``check_name``)
so that a run folder ``<method>-<tag>`` splits unambiguously. An object is registered

- by object: ``registry.register(obj)`` (its name is ``obj.name``) or as a decorator;
- by reference: ``registry.register("package.module:attr", name="x")``, imported on first use;
- as a built-in: ``builtins={"x": "mmbench.methods.x"}`` names the module whose import registers
  ``x``, so a name is found, or a typo refused, without importing torch;
- by an entry point of the group ``entry_point``, loaded after every built-in in a fixed order
  (distribution name, then entry-point name), so a plugin never replaces a built-in. A plugin
  that cannot be loaded is recorded as a ``PluginError`` naming its package and version, and
  never stops the built-ins or the other plugins from working.

``scoped()`` gives a test its own copy of the registry's state, restored after the block.
This module imports nothing of mmbench but ``mmbench.results.errors``.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Generic, TypeVar

from mmbench.results.errors import MMBenchError

T = TypeVar("T")

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
# The plain joint-training baseline: the row every table puts after the unimodal references and
# the reference of the cost table's "×joint" column.
BASELINE_METHOD = "joint"


def check_name(kind: str, name) -> str:
    """``name`` if it matches ``^[a-z][a-z0-9_]*$``; else ``ValueError`` saying why."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(
            f"{kind} name {name!r} is not a valid name: use lower-case letters, digits and '_', "
            "starting with a letter (run folders are '<method>-<tag>')"
        )
    return name


@dataclass(frozen=True)
class PluginError:
    """One entry point that could not be registered: its name, package and why."""

    kind: str  # "method" | "dataset" | ...
    name: str  # the entry-point name
    package: str  # "<distribution> <version>"
    message: str

    def __str__(self) -> str:
        return f"{self.name} ({self.package}): {self.message}"


def _target(obj):
    """The class or function that defines ``obj`` (an instance stands for its class)."""
    return obj if isinstance(obj, type) or inspect.isfunction(obj) else type(obj)


def origin(obj) -> str:
    """``"<distribution> <version>"`` that ships ``obj`` (a class, a function, or an instance's
    class; ``mmbench <version>`` for the built-ins), or ``"<module> (not installed)"``."""
    module = _target(obj).__module__
    top = module.split(".")[0]
    if top == "mmbench":
        from mmbench import __version__

        return f"mmbench {__version__}"
    for dist in metadata.packages_distributions().get(top, []):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return f"{module} (not installed)"


def qualified(obj) -> str:
    """``module.QualName`` of what defines ``obj`` (its class for an instance)."""
    target = _target(obj)
    return f"{target.__module__}.{target.__qualname__}"


def entry_points(group: str) -> list:
    """The installed entry points of ``group`` (empty when the metadata is broken)."""
    try:
        return list(metadata.entry_points(group=group))
    except Exception:  # pragma: no cover - broken metadata
        return []


def dist_label(ep) -> str:
    """``"<distribution> <version>"`` of an entry point, or ``"unknown package"``."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown package"
    return f"{dist.name} {dist.version}"


def _resolve(ref: str):
    module, _, attr = ref.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Named objects of one kind.

    ``kind`` names the kind in messages; ``entry_point`` is the plugin group (None: no plugins);
    ``builtins`` maps each built-in name to the module that registers it; ``prepare`` turns what
    is registered into the stored object (a dataset factory is called); ``problems`` lists what
    makes an object unusable (refused at registration); ``same`` says whether two objects are one
    (re-registering the same one replaces it; another one under a taken name is refused);
    ``name_of`` reads an object's name; ``strict_plugin_names`` requires an entry point's name to
    equal the object's name; ``listing`` is the command that lists the kind (for messages).
    """

    def __init__(
        self,
        kind: str,
        *,
        entry_point: str | None = None,
        builtins: dict[str, str] | None = None,
        prepare: Callable[[object], T] | None = None,
        problems: Callable[[object], list[str]] | None = None,
        same: Callable[[object, object], bool] | None = None,
        name_of: Callable[[object], str] = lambda obj: getattr(obj, "name", None),
        strict_plugin_names: bool = False,
        listing: str | None = None,
    ):
        self.kind = kind
        self.entry_point = entry_point
        self.builtins = dict(builtins or {})
        self._prepare = prepare or (lambda obj: obj)
        self._problems = problems or (lambda obj: [])
        self._same = same or (lambda a, b: a is b)
        self._name_of = name_of
        self.strict_plugin_names = strict_plugin_names
        self.listing = listing or f"mmbench list {kind}s"
        self._items: dict[str, T] = {}
        self._origin: dict[str, str] = {}
        self._lazy: dict[str, str] = {}
        self._builtin: set[str] = set()
        self._errors: list[PluginError] = []
        self._loaded = False

    # ------------------------------------------------------------------ registering
    def register(self, obj, name: str | None = None, *, origin_label: str | None = None):
        """Register ``obj`` under ``name`` (default ``obj.name``); returns ``obj`` (a decorator).
        A ``"module:attr"`` string is registered by reference and imported on first use (then
        ``name`` is required). A name taken by another object is refused (``ValueError``)."""
        if isinstance(obj, str):
            if name is None:
                raise TypeError(f"registering {self.kind} {obj!r} by reference needs a name")
            check_name(self.kind, name)
            self._lazy[name] = obj
            return obj
        stored = self._prepare(obj)
        name = name if name is not None else self._name_of(stored)
        if not name:
            raise TypeError(f"{qualified(stored)} has no `name`")
        check_name(self.kind, name)
        present = self._items.get(name)
        if present is not None and not self._same(present, stored):
            raise ValueError(
                f"{self.kind} name {name!r} is already registered by {qualified(present)} "
                f"({self._origin[name]}): choose another name"
            )
        self._items[name] = stored
        self._origin[name] = origin_label or origin(stored)
        if qualified(stored).startswith("mmbench."):
            self._builtin.add(name)
        return obj

    def __call__(self, obj):
        """``@registry`` registers a class under its ``name``."""
        return self.register(obj)

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """Import every built-in module, then the plugins (once)."""
        if self._loaded:
            return
        self._loaded = True
        for module in sorted(set(self.builtins.values())):
            importlib.import_module(module)
        if self.entry_point:
            self.load_entry_points(entry_points(self.entry_point))

    def load_entry_points(self, eps: Iterable) -> None:
        """Register the objects of ``eps`` (entry points or stand-ins with ``name``, ``value``,
        ``load()`` and ``dist``), in (distribution, name) order; failures become ``PluginError``s."""
        for ep in sorted(eps, key=lambda ep: (dist_label(ep).lower(), ep.name)):
            package = dist_label(ep)
            try:
                obj = ep.load()
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - a plugin may fail in any way
                self._broken(ep, package, f"cannot import {ep.value}: {type(exc).__name__}: {exc}")
                continue
            try:
                stored = self._prepare(obj)
                problems = self._problems(stored)
            except (Exception, SystemExit) as exc:  # noqa: BLE001
                self._broken(ep, package, f"{type(exc).__name__}: {exc}")
                continue
            if problems:
                self._broken(ep, package, f"{ep.value}: " + "; ".join(problems))
                continue
            name = self._name_of(stored)
            if self.strict_plugin_names and name != ep.name:
                self._broken(
                    ep,
                    package,
                    f"entry-point name {ep.name!r} differs from {ep.value}.name {name!r}; make them equal",
                )
                continue
            try:
                check_name(self.kind, name)
            except ValueError as exc:
                self._broken(ep, package, str(exc))
                continue
            if name in self._items and not self._same(self._items[name], stored):
                self._broken(
                    ep,
                    package,
                    f"duplicate {self.kind} name {name!r}: already provided by {self._origin[name]}",
                )
                continue
            self._items[name] = stored
            self._origin[name] = package

    def _broken(self, ep, package: str, message: str) -> None:
        self._errors.append(PluginError(self.kind, ep.name, package, message))

    def _load_one(self, name: str) -> None:
        """Make ``name`` registered as cheaply as possible: a built-in imports only its own
        module, a reference only its own; any other name loads everything."""
        if name in self._items:
            return
        if name in self._lazy:
            self.register(_resolve(self._lazy.pop(name)), name)
            return
        if name in self.builtins and not self._loaded:
            importlib.import_module(self.builtins[name])
            if name in self._items:
                return
        self.load()

    # ------------------------------------------------------------------ reading
    def get(self, name: str) -> T:
        """The object registered as ``name``; ``MMBenchError`` naming the valid names (or the
        broken plugin of that name) otherwise."""
        self._load_one(name)
        if name not in self._items:
            errors = [str(e) for e in self._errors if e.name == name]
            if errors:
                raise MMBenchError(
                    f"{self.kind} {name!r} is a broken plugin: {'; '.join(errors)} (see `{self.listing}`)"
                )
            raise self.unknown(name, set(self._items) | set(self._lazy))
        return self._items[name]

    def __contains__(self, name: str) -> bool:
        self.load()
        return name in self._items or name in self._lazy

    def names(self) -> list[str]:
        self.load()
        return sorted(set(self._items) | set(self._lazy))

    def __iter__(self):
        return iter(self.names())

    def builtin_names(self) -> list[str]:
        """The names shipped in mmbench (not plugins)."""
        self.load()
        return sorted(self._builtin)

    def origin(self, name: str) -> str:
        """``"<package> <version>"`` of the distribution that provides ``name``."""
        self.load()
        return self._origin.get(name, "?")

    def failures(self) -> list[PluginError]:
        """Every entry point that could not be registered, in load order."""
        self.load()
        return list(self._errors)

    def known_without_loading(self, name: str) -> bool:
        """Whether ``name`` is a built-in, a reference, an entry-point name or registered,
        judged without importing anything."""
        if name in self.builtins or name in self._items or name in self._lazy:
            return True
        return bool(self.entry_point) and name in {ep.name for ep in entry_points(self.entry_point)}

    def unknown(self, name: str, known=None) -> MMBenchError:
        """The error for an unknown ``name``: the valid names and the closest one."""
        if known is None:
            known = set(self.builtins) | set(self._items) | set(self._lazy)
            if self.entry_point:
                known |= {ep.name for ep in entry_points(self.entry_point)}
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return MMBenchError(f"unknown {self.kind} {name!r}; valid {self.kind}s: {', '.join(known)}.{hint}")

    # ------------------------------------------------------------------ scopes
    @contextlib.contextmanager
    def registered(self, obj):
        """``obj`` registered under its name inside the block (unless it already is), removed
        after; refused (``MMBenchError``) when unusable or when the name is another object's."""
        self.load()
        stored = self._prepare(obj)
        problems = self._problems(stored)
        if problems:
            raise MMBenchError("; ".join(problems))
        name = self._name_of(stored)
        present = self._items.get(name)
        if present is not None and not self._same(present, stored):
            raise MMBenchError(
                f"{self.kind} name {name!r} is already taken by {qualified(present)} "
                f"({self._origin[name]}): choose another name"
            )
        if present is not None:
            yield stored
            return
        check_name(self.kind, name)
        self._items[name] = stored
        self._origin[name] = origin(stored)
        try:
            yield stored
        finally:
            self._items.pop(name, None)
            self._origin.pop(name, None)

    @contextlib.contextmanager
    def scoped(self, *, plugins: bool = True):
        """A copy of the registry for the block (a test registers, loads fake entry points or
        records failures freely); the state before is restored after. ``plugins=False`` starts
        the copy with the built-ins only (no plugin, no recorded failure)."""
        self.load()
        saved = (
            dict(self._items),
            dict(self._origin),
            dict(self._lazy),
            set(self._builtin),
            list(self._errors),
        )
        if not plugins:
            self._items = {n: o for n, o in self._items.items() if n in self._builtin}
            self._origin = {n: o for n, o in self._origin.items() if n in self._builtin}
            self._errors = []
        try:
            yield self
        finally:
            self._items, self._origin, self._lazy, self._builtin, self._errors = saved
