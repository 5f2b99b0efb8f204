"""Moved to :mod:`mmbench.speed.estimate` (speed measurement left the harness); this alias stays
for one release."""

import sys

from mmbench.speed import estimate as _moved

sys.modules[__name__] = _moved
