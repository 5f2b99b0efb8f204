"""Built-in methods: one module per method, registered with ``@register_method`` when imported.

Nothing is imported here (so ``mmbench --help`` and name look-ups need no torch): the registry
(``mmbench.methods.registry.BUILTIN_METHODS``) imports a method's module on first use. Adding a
method is adding one file and its line in that table.
"""

_LAZY = {"Method": "mmbench.methods.base", "Optimizers": "mmbench.methods.base"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmbench.methods' has no attribute {name!r}")


__all__ = ["Method", "Optimizers"]
