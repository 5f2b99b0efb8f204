"""mmbench: a fair benchmark suite for imbalanced multimodal learning.

The notebook API (``mmbench/api.py``) is imported on first use, so ``import mmbench`` (and the
CLI, which imports the package) stays light::

    import mmbench
    df = mmbench.load_results("results")      # tidy pandas DataFrame
    mmbench.table("results")                   # the table the CLI renders
    mmbench.run("joint", "mfeat", seeds=2, epochs=2)
"""

__version__ = "0.1.0"

_API = ("load_results", "table", "run", "export")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from mmbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'mmbench' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
