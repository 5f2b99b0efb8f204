"""Moved to :mod:`mmbench.results.store`; this alias stays for one release (``mmbench.benchmark.store``
is the same module object, so attributes set on one are seen through the other)."""

import sys

from mmbench.results import store as _store

sys.modules[__name__] = _store
