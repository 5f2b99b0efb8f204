"""Probe finished runs: ``probe.json`` beside each run's record.

For one run directory: restore the weights the ``val`` rule selected (``restore.load_selected``),
extract the frozen encoders' features of train, val and test once (``restore.extract_features``),
fit one linear probe per modality and one on the concatenated features with the one recipe
(``recipe.py``), and compute the imbalance scores the same way for every method:

* ``probe_ratio``: test probe accuracy of the strongest modality over that of the weakest;
* ``shapley``: exact Shapley contributions to the method's fused test accuracy (``shapley.py``).

``probe.json`` is written atomically through the results store; the run's own files are never
written. A run whose ``probe.json`` already holds the same recipe hash, the run's identity hash
and the selected epoch is skipped (probing resumes where it stopped); ``rerun`` probes it again.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from mmbench.benchmark.metrics import classification_metrics
from mmbench.probe.linear import fit_probe
from mmbench.probe.recipe import DEFAULT_RECIPE, ProbeRecipe
from mmbench.probe.record import RULE, is_current, read_probe
from mmbench.probe.shapley import coalition_metrics, shapley_block
from mmbench.results import store
from mmbench.results.errors import MMBenchError

PROBE_SCHEMA = 1
SPLITS = ("train", "val", "test")
CONCAT = "concat"


def probe_ratio(probes: dict, modalities) -> dict:
    """Test probe accuracy of the strongest modality over the weakest's (null if that is 0)."""
    acc = {m: probes[m]["test"]["acc"] for m in modalities}
    strong, weak = max(acc, key=acc.get), min(acc, key=acc.get)
    return {
        "value": acc[strong] / acc[weak] if acc[weak] > 0 else None,
        "strongest": strong,
        "weakest": weak,
        "split": "test",
        "metric": "acc",
    }


def _split_features(restored) -> dict:
    return {split: _extract(restored, split) for split in SPLITS}


def _extract(restored, split):
    from mmbench.benchmark.restore import extract_features

    return extract_features(restored, split)


def fit_all(feats: dict, modalities, num_classes: int, recipe: ProbeRecipe) -> dict:
    """One probe per modality and one on the concatenation (modality order)."""
    probes = {}
    for m in modalities:
        probes[m] = fit_probe({s: (feats[s]["features"][m], feats[s]["labels"]) for s in SPLITS}, num_classes, recipe)
    concat = {s: (torch.cat([feats[s]["features"][m] for m in modalities], 1), feats[s]["labels"]) for s in SPLITS}
    probes[CONCAT] = fit_probe(concat, num_classes, recipe)
    return probes


def probe_record(restored, record: dict, recipe: ProbeRecipe = DEFAULT_RECIPE) -> dict:
    """The ``probe.json`` content of one restored run."""
    t0 = time.time()
    modalities = tuple(restored.spec.modalities)
    feats = _split_features(restored)
    probes = fit_all(feats, modalities, restored.spec.num_classes, recipe)
    means = {m: feats["train"]["features"][m].mean(0) for m in modalities}
    by_coalition = coalition_metrics(
        restored, feats["test"]["features"], feats["test"]["labels"], means, classification_metrics
    )
    return {
        "schema": PROBE_SCHEMA,
        "run": {
            "dataset": record.get("dataset"), "method": record.get("method"), "tag": record.get("tag"),
            "seed": record.get("seed"), "identity_hash": (record.get("identity") or {}).get("hash"),
            "rule": restored.rule, "epoch": restored.epoch,
        },
        "recipe": recipe.to_dict(),
        "recipe_hash": recipe.hash(),
        "modalities": list(modalities),
        "feature_dims": {m: int(feats["train"]["features"][m].shape[1]) for m in modalities},
        "probes": probes,
        "imbalance": {
            "probe_ratio": probe_ratio(probes, modalities),
            "shapley": shapley_block(by_coalition, modalities),
        },
        "seconds": round(time.time() - t0, 2),
    }


def probe_run(run_dir, recipe: ProbeRecipe = DEFAULT_RECIPE, rerun: bool = False, device="cpu", root=None):
    """Probe one finished run; returns ``(status, probe)`` with status ``probed`` or ``skipped``."""
    from mmbench.benchmark.restore import load_selected

    run_dir = Path(run_dir)
    record = store.read_json(run_dir / store.RESULT)
    if not record or record.get("status") != "finished":
        raise MMBenchError(f"{run_dir} has no finished run record; train it first (`mmbench run`)")
    if not rerun:
        try:
            old = read_probe(run_dir)
        except MMBenchError:
            old = None  # a damaged probe.json is replaced by a new probe
        if is_current(old, record, recipe.hash()):
            return "skipped", old
    restored = load_selected(run_dir, RULE, device=device, root=root)
    probe = probe_record(restored, record, recipe)
    store.write_json(run_dir / store.PROBE, probe)
    return "probed", probe


def probe_results(results_root, datasets=None, methods=None, recipe: ProbeRecipe = DEFAULT_RECIPE,
                  rerun: bool = False, device="cpu", roots: dict | None = None, echo=print) -> dict:
    """Probe every finished run below ``results_root`` (optionally filtered); one line per run.
    Returns counts ``{"probed", "skipped", "failed"}``; a run that cannot be probed (no
    ``best.ckpt``, missing data) is reported and the others still run."""
    counts = {"probed": 0, "skipped": 0, "failed": 0}
    scan = store.scan_results(results_root, datasets, methods)
    for problem in scan.problems:  # named, never dropped; a damaged record counts as a failure
        echo(f"{'failed ' if problem.kind == 'unreadable' else 'skipped'} {problem.line()}")
        counts["failed" if problem.kind == "unreadable" else "skipped"] += 1
    for rec in scan.records:
        if rec.get("status") != "finished":
            continue
        label = f"{rec['dataset']}/{rec['run']} seed {rec['seed']}"
        try:
            status, probe = probe_run(rec["path"], recipe, rerun, device, (roots or {}).get(rec["dataset"]))
        except MMBenchError as exc:
            counts["failed"] += 1
            echo(f"failed  {label}: {exc}")
            continue
        counts[status] += 1
        echo(f"{status:<7} {label}: {summary(probe)}")
    return counts


def summary(probe: dict) -> str:
    """One line: test probe accuracy per modality and concat, the probe ratio, the Shapley values."""
    accs = " ".join(f"{k} {100 * v['test']['acc']:.2f}" for k, v in probe["probes"].items())
    imb = probe["imbalance"]
    ratio = imb["probe_ratio"]["value"]
    phi = " ".join(f"{m} {100 * v:+.2f}" for m, v in imb["shapley"]["values"].items())
    ratio_text = "n/a" if ratio is None else f"{ratio:.3f}"
    return f"probe test acc {accs}; ratio {ratio_text}; Shapley (acc points) {phi}"


def probe_outcomes(outcomes, roots: dict | None = None, echo=print) -> dict:
    """``mmbench sweep --probe``: probe every run of the sweep that has a finished record
    (trained now or skipped as finished); current probes are skipped."""
    counts = {"probed": 0, "skipped": 0, "failed": 0}
    for o in outcomes:
        path = Path(o.path) if o.path else None
        if path is None or store.run_status(path) != "finished":
            continue
        try:
            status, probe = probe_run(path, root=(roots or {}).get(o.job.dataset))
        except MMBenchError as exc:
            counts["failed"] += 1
            echo(f"probe failed {o.job.label()}: {exc}")
            continue
        counts[status] += 1
        echo(f"probe {status} {o.job.label()}: {summary(probe)}")
    echo(f"probes: {counts['probed']} written, {counts['skipped']} current, {counts['failed']} failed")
    return counts
