"""Final runs: each study's best configuration re-run on the standard split with fresh seeds.

The best trial is the highest objective among COMPLETE planned trials, ties to the lowest index
(so the anchor wins a tie). Its configuration is the study's fixed overrides plus the trial's
parameters, without ``data.cv_folds``: an ordinary run, tagged ``tuned-<label>``, with seeds
``0..S-1`` (disjoint from the trial seeds 1000+, equal to the default rows' seeds, so default
and tuned can be paired per seed). Each finished record gets a ``tuning`` block naming the
study, its budget and the chosen parameters (provenance: the identity is the resolved config).
"""

from __future__ import annotations

import shlex

from mmbench.results import store
from mmbench.results.errors import ConfigError
from mmbench.tuning.study import Study, final_tag


def best_trial(st: Study, state) -> tuple[int, float, dict]:
    best = None
    for number, value, attrs in sorted(state.complete, key=lambda c: c[0]):
        if best is None or value > best[1]:
            best = (number, value, attrs)
    return best


def check_ready(st: Study, state, partial: bool) -> None:
    total = st.n_planned()
    unfinished = total - len(state.complete) - len(state.failed)
    if not state.complete:
        raise ConfigError(
            f"{st.name}: no trial has completed yet ({unfinished} of {total} trials not finished); "
            "run the study first"
        )
    if unfinished and not partial:
        raise ConfigError(
            f"{st.name}: {unfinished} of {total} trials not finished; finish the study or pass --partial"
        )


def tuning_block(st: Study, state, best, partial: bool) -> dict:
    number, value, attrs = best
    finished = len(state.complete) + len(state.failed)
    return {
        "label": st.label,
        "study": st.name,
        "study_hash": st.study_hash,
        "trials": st.trials,
        "finished": finished - 1 if finished else 0,
        "partial": bool(partial and finished < st.n_planned()),
        "completed": len(state.complete),
        "failed": len(state.failed),
        "anchor_included": True,
        "folds": st.folds,
        "repeats": st.repeats,
        "metric": st.metric,
        "sampler": st.sampler,
        "study_seed": st.study_seed,
        "best_trial": number,
        "best_value_val_cv": value,
        "best_value_fold_std": attrs.get("fold_std"),
        "params": dict(st.plan[number]),
        "space": {d.key: d.describe() for d in st.dims},
        "space_hash": st.space_hash,
        "hours": round(state.hours, 4),
    }


def final_overrides(st: Study, best) -> dict:
    return {**st.fixed, **st.plan[best[0]]}


def run_line(st: Study, overrides: dict, seeds: int, seed_start: int) -> str:
    sets = " ".join(f"--set {shlex.quote(f'{k}={v}')}" for k, v in overrides.items())
    start = f" --seed-start {seed_start}" if seed_start else ""
    return (
        f"mmbench run -m {st.method} -d {st.dataset} --seeds {seeds}{start} "
        f"--tag {final_tag(st.base, st.method, st.label)} {sets}"
    ).strip()


def stamp(outcomes, block: dict) -> int:
    """Add the ``tuning`` block to every finished final record that lacks it; the count."""
    n = 0
    for o in outcomes:
        if not o.path:
            continue
        path = f"{o.path}/{store.RESULT}"
        rec = store.read_json(path)
        if rec is None or rec.get("status") != "finished" or rec.get("tuning") == block:
            continue
        rec["tuning"] = block
        store.write_json(path, rec)
        n += 1
    return n
