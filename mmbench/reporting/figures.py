"""Moved to :mod:`mmbench.paper.figures` (the paper's tables, figures and report section live with
the paper code); this alias stays for one release."""

import sys

from mmbench.paper import figures as _moved

sys.modules[__name__] = _moved
