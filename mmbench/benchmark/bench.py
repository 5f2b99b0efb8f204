"""Moved to :mod:`mmbench.speed.steps` (speed measurement left the harness); this alias stays
for one release."""

import sys

from mmbench.speed import steps as _moved

sys.modules[__name__] = _moved
