"""The registry of methods (``METHODS``, a ``mmbench.results.registry.Registry``).

Built-in methods register with ``@register_method`` when their module is imported: on first use
of the name (``BUILTIN_METHODS`` maps names to modules, so looking a name up, or refusing a typo,
imports no torch), or all at once when a listing needs them. Third-party packages expose classes
in the entry-point group ``mmbench.methods``
(``[project.entry-points."mmbench.methods"] name = "package.module:Class"``), loaded after every
built-in. A broken plugin (import error, wrong base class, a ``Hyper`` that is not a dataclass
with defaults, an entry-point name that differs from the class's ``name``, a duplicate name) is
recorded with its package and version and never stops the others from working.
"""

from __future__ import annotations

import dataclasses

from mmbench.results.registry import Registry

METHOD_ENTRY_POINT = "mmbench.methods"

# Built-in names and the module that registers each (a test checks this table against what the
# modules register).
BUILTIN_METHODS = {
    name: f"mmbench.methods.{name}"
    for name in (
        "agm",
        "amco",
        "cggm",
        "cml",
        "di_mml",
        "dnr",
        "g2d",
        "gblend",
        "greedy",
        "inforeg",
        "joint",
        "lfm",
        "mcr",
        "mla",
        "mlb",
        "mmcosine",
        "mmpareto",
        "mslr",
        "ogm_ge",
        "ogm_tpami",
        "opm",
        "pmr",
        "reconboost",
        "sustained_boost",
        "ume",
        "umt",
        "unimodal",
        "valuation",
    )
}


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


METHODS: Registry[type] = Registry(
    "method",
    entry_point=METHOD_ENTRY_POINT,
    builtins=BUILTIN_METHODS,
    problems=method_class_problems,
    strict_plugin_names=True,
)


def register_method(cls):
    """Class decorator: make a ``Method`` subclass available under ``cls.name``."""
    return METHODS.register(cls)
