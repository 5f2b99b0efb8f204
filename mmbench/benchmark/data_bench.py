"""Moved to :mod:`mmbench.speed.data` (speed measurement left the harness); this alias stays
for one release."""

import sys

from mmbench.speed import data as _moved

sys.modules[__name__] = _moved
