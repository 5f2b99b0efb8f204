"""Welch's t-test of each method against its column's best equals scipy's ttest_ind."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from mmbench.reporting.significance import against_best, welch_p

CASES = [
    ([0.71, 0.72, 0.70], [0.75, 0.76, 0.74]),
    ([0.5, 0.6, 0.55, 0.52, 0.58], [0.61, 0.59]),
    ([0.9, 0.9, 0.91], [0.8, 0.95, 0.7, 0.85]),
    ([0.1, 0.2], [0.1, 0.2]),
    ([0.25, 0.25, 0.25], [0.125, 0.5, 0.25]),  # one side with zero variance
]


@pytest.mark.parametrize("a,b", CASES)
def test_welch_p_matches_scipy_ttest_ind_unequal_variances(a, b):
    with warnings.catch_warnings():  # scipy warns about the zero-variance sample; its p is fine
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert welch_p(a, b) == pytest.approx(expected, abs=1e-6)
    assert welch_p(b, a) == pytest.approx(expected, abs=1e-6)


def test_welch_p_is_undefined_for_single_seeds_or_no_variance():
    assert welch_p([0.5], [0.6, 0.7]) is None
    assert welch_p([0.5, 0.5], [0.6, 0.6]) is None


def test_against_best_skips_the_best_itself():
    values = {"a": np.array([0.7, 0.71, 0.72]), "b": np.array([0.8, 0.81, 0.79])}
    out = against_best(values, "b")
    assert out["b"] is None
    assert out["a"] == pytest.approx(stats.ttest_ind(values["a"], values["b"], equal_var=False).pvalue, abs=1e-6)
