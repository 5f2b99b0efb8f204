"""The trial plan: trial i's configuration as a pure function of (space, study seed, i).

Index 0 is the anchor (the resolved default of every searched key). For i >= 1:

* ``random`` (default): the shared dimensions (group 0) from
  ``numpy.random.default_rng([study_seed, i, 0])`` and the method's (group 1) from
  ``default_rng([study_seed, i, 1])``, one uniform per dimension in key order; log dimensions
  uniform in log space, int dimensions rounded, categorical dimensions uniform over the
  choices. Trial i of every method on a dataset thus gets the same (lr, wd) when the shared
  spaces are equal (common random numbers), draws are i.i.d. (Dodge et al. 2019's
  expected-maximum estimator assumes it), and growing ``--trials`` keeps every earlier index.
* ``sobol``: the same mapping from a scrambled Sobol point,
  ``scipy.stats.qmc.Sobol(d, scramble=True, seed=default_rng([study_seed, group]))`` fast-forwarded
  to point i-1, per group. Better coverage at small N, but not i.i.d.
* ``grid``: the Cartesian product of categorical dimensions in an order shuffled by
  ``default_rng([study_seed, 2])``; the plan must be exactly the grid.

Because the plan never depends on the order in which trials are asked, any number of workers,
in any order, after any kill, evaluate the same configurations (Optuna's own samplers are not
reproducible under parallel runs, its FAQ says).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from mmbench.tuning.space import Dim

PLANNED_SAMPLERS = ("random", "sobol", "grid")
SAMPLERS = (*PLANNED_SAMPLERS, "tpe")


def _map(d: Dim, u: float):
    if d.kind == "categorical":
        return d.choices[min(int(u * len(d.choices)), len(d.choices) - 1)]
    if d.log:
        x = math.exp(math.log(d.low) + u * (math.log(d.high) - math.log(d.low)))
    else:
        x = d.low + u * (d.high - d.low)
    if d.kind == "int":
        return int(min(max(round(x), d.low), d.high))
    return float(min(max(x, d.low), d.high))


def _uniforms(dims: list[Dim], sampler: str, study_seed: int, index: int, group: int) -> list[float]:
    n = len(dims)
    if n == 0:
        return []
    if sampler == "random":
        return np.random.default_rng([study_seed, index, group]).random(n).tolist()
    if sampler == "sobol":
        from scipy.stats import qmc

        eng = qmc.Sobol(n, scramble=True, seed=np.random.default_rng([study_seed, group]))
        if index > 1:
            eng.fast_forward(index - 1)
        return eng.random(1)[0].tolist()
    raise ValueError(sampler)


def grid_size(dims: list[Dim]) -> int:
    return math.prod(len(d.choices) for d in dims)


def grid_order(dims: list[Dim], study_seed: int) -> list[dict]:
    combos = [
        dict(zip([d.key for d in dims], c, strict=True))
        for c in itertools.product(*[d.choices for d in dims])
    ]
    order = np.random.default_rng([study_seed, 2]).permutation(len(combos))
    return [combos[i] for i in order]


def trial_params(dims: list[Dim], sampler: str, study_seed: int, index: int, anchor: dict) -> dict:
    """Trial ``index``'s parameters (0: ``anchor``)."""
    if index == 0:
        return {d.key: anchor[d.key] for d in dims}
    if sampler == "grid":
        return grid_order(dims, study_seed)[index - 1]
    out = {}
    for group in (0, 1):
        gd = [d for d in dims if d.group == group]
        for d, u in zip(gd, _uniforms(gd, sampler, study_seed, index, group), strict=True):
            out[d.key] = _map(d, u)
    return out


def make_plan(dims: list[Dim], sampler: str, study_seed: int, trials: int, anchor: dict) -> list[dict]:
    """The anchor and ``trials`` planned trials (``trials + 1`` parameter dicts)."""
    return [trial_params(dims, sampler, study_seed, i, anchor) for i in range(trials + 1)]
