"""Moved to :mod:`mmbench.results.errors`; this alias stays for one release so plugins written
against ``mmbench.errors`` keep working."""

from mmbench.results.errors import *  # noqa: F401,F403
from mmbench.results.errors import (  # noqa: F401
    ConfigError,
    DataError,
    MediaError,
    MMBenchError,
    NonFiniteLossError,
)
