"""Significance of each method against the best method of its table column.

Welch's unequal-variance t-test, two-sided, of one method's per-seed values against the per-seed
values of the column's best method (highest mean):
``t = (mean_a - mean_b) / sqrt(s_a^2/n_a + s_b^2/n_b)`` (sample variances, ddof = 1), with the
Welch-Satterthwaite degrees of freedom
``df = (s_a^2/n_a + s_b^2/n_b)^2 / ((s_a^2/n_a)^2/(n_a-1) + (s_b^2/n_b)^2/(n_b-1))`` and
``p = 2 * F_t(-|t|; df)`` from ``scipy.special.stdtr``. This is exactly
``scipy.stats.ttest_ind(a, b, equal_var=False).pvalue`` (the tests check it), without importing
``scipy.stats`` (half a second) on every ``mmbench table``. A cell is marked when p < alpha (0.05 by default): the method is significantly worse than
the best. The test needs at least two seeds on each side; with fewer, or when both sides have
zero variance (the statistic is undefined), no p-value is reported and nothing is marked.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import stdtr

DEFAULT_ALPHA = 0.05


def welch_p(a, b) -> float | None:
    """Two-sided p-value of Welch's t-test between samples ``a`` and ``b``, or None if undefined."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    if va + vb == 0:
        return None
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    p = float(2 * stdtr(df, -abs(t)))
    return p if math.isfinite(p) else None


def against_best(values: dict[str, np.ndarray], best: str) -> dict[str, float | None]:
    """p-value of every entry of ``values`` (run -> per-seed values) against ``values[best]``;
    the best itself gets None."""
    ref = values[best]
    return {run: (None if run == best else welch_p(v, ref)) for run, v in values.items()}
