"""Run records written without training, for the reporting tests and benchmark.

Each record has the shapes of ARCHITECTURE.md "Runs and results": ``result.json`` (selection by
the real ``select_all``) and ``history.jsonl`` with val/test METRICS per epoch and, for
``sustained_boost``, ``diagnostics["classifiers"]``.
"""

from __future__ import annotations

import hashlib

import numpy as np

from mmbench.benchmark import store
from mmbench.benchmark.selection import select_all

SEED_OFFSETS = (-0.012, 0.0, 0.009, 0.015, -0.006)
# what a record says its per-modality logits are (result.json "heads"; written by the harness)
HEAD_MEANINGS = {
    "joint": "split of the concat head, W_m phi^m + b/M",
    "ogm_ge": "split of the concat head, W_m phi^m + b/M",
    "pmr": "split of the concat head, W_m phi^m + b/M",
    "mla": "shared head on that modality, h(phi_m)",
    "sustained_boost": "the modality's classifier ensemble F^m = z_1 + w^m sum_j z_j",
    "unimodal": "its only head (a separately trained model)",
}


def _metrics(accs: dict[str, float]) -> dict:
    return {h: {"acc": round(a, 4), "map": round(min(a + 0.03, 1.0), 4), "f1": round(a - 0.02, 4)}
            for h, a in accs.items()}


def write_run(root, dataset, method, seed, final: dict[str, float], epochs=5, tag=None,
              status="finished", error=None, classifiers=None, val_shift=-0.01, identity="cfg", schema=2):
    """One run: head accuracies rise linearly to ``final`` (+ a per-seed offset) over ``epochs``.
    ``schema=2`` records carry an identity hash (of ``identity`` and the run name), the heads'
    meanings and the unimodal-reference flag; ``schema=1`` records have none of these."""
    run = f"{method}-{tag}" if tag else method
    directory = store.run_dir(root, dataset, run, seed)
    off = SEED_OFFSETS[seed % len(SEED_OFFSETS)]
    history = []
    for e in range(epochs):
        frac = 0.6 + 0.4 * (e + 1) / epochs
        test = {h: a * frac + off for h, a in final.items()}
        val = {h: a + val_shift * (e % 2) for h, a in test.items()}
        diag = {}
        if classifiers:
            diag["classifiers"] = {m: 1 + (e * k) // epochs for m, k in classifiers.items()}
        history.append({"epoch": e, "train": {"loss": round(1.0 / (e + 1), 4)}, "val": _metrics(val),
                        "test": _metrics(test), "diagnostics": diag, "selectable": True})
    store.write_history(directory / store.HISTORY, history)
    record = {
        "dataset": dataset, "method": method, "tag": tag, "seed": seed, "status": status, "error": error,
        "selection": select_all(history) if status == "finished" else {},
    }
    if schema >= 2:
        meaning = HEAD_MEANINGS.get(method, "the modality's own head")
        record.update({
            "schema_version": 2,
            "identity": {"hash": hashlib.sha256(f"{dataset}/{run}/{identity}".encode()).hexdigest()[:16]},
            "heads": {h: ("fusion" if h == "fusion" and method != "unimodal" else meaning) for h in final},
            "unimodal_reference": method == "unimodal",
        })
    store.write_json(directory / store.RESULT, record)
    return directory


def write_fixed_records(root) -> None:
    """The small fixed set the golden files are rendered from: two datasets, an incomplete group
    (sustained_boost 2/3, pmr 1/3), a failed run and unimodal references."""
    mf = {"fusion": 0.90, "image": 0.70, "fourier": 0.78}
    for seed in range(3):
        write_run(root, "mfeat", "joint", seed, mf)
        write_run(root, "mfeat", "ogm_ge", seed, {"fusion": 0.93, "image": 0.76, "fourier": 0.77})
        write_run(root, "mfeat", "unimodal", seed, {"fusion": 0.80, "image": 0.80}, tag="image")
        write_run(root, "mfeat", "unimodal", seed, {"fusion": 0.81, "fourier": 0.81}, tag="fourier")
    for seed in range(2):
        write_run(root, "mfeat", "sustained_boost", seed, {"fusion": 0.935, "image": 0.79, "fourier": 0.80},
                  classifiers={"image": 3, "fourier": 2})
    write_run(root, "mfeat", "sustained_boost", 2, {}, status="failed", error="non-finite loss at epoch 3")
    av = {"fusion": 0.62, "audio": 0.55, "video": 0.30}
    for seed in range(3):
        write_run(root, "avtoy", "joint", seed, av)
        write_run(root, "avtoy", "mla", seed, {"fusion": 0.66, "audio": 0.57, "video": 0.45})
    write_run(root, "avtoy", "pmr", 0, {"fusion": 0.64, "audio": 0.56, "video": 0.40})


SYNTH_METHODS = ("joint", "gblend", "mslr", "ogm_ge", "pmr", "agm", "mmpareto", "mla", "reconboost",
                 "sustained_boost")


def write_synthetic_records(root, datasets=5, runs=20, seeds=5, epochs=30, rng_seed=0) -> int:
    """``datasets * runs * seeds`` finished records (two unimodal references, the ten methods and
    tagged variants); returns how many were written."""
    rng = np.random.default_rng(rng_seed)
    count = 0
    for d in range(datasets):
        mods = ("audio", "video")
        names = [("unimodal", m) for m in mods] + [(m, None) for m in SYNTH_METHODS]
        k = 0
        while len(names) < runs:
            names.append((SYNTH_METHODS[k % len(SYNTH_METHODS)], f"v{k}"))
            k += 1
        for method, tag in names[:runs]:
            for seed in range(seeds):
                if method == "unimodal":
                    a = float(rng.uniform(0.4, 0.7))
                    final = {"fusion": a, tag: a}
                else:
                    final = {"fusion": float(rng.uniform(0.6, 0.9)), "audio": float(rng.uniform(0.4, 0.7)),
                             "video": float(rng.uniform(0.2, 0.5))}
                clf = {"audio": 4, "video": 6} if method == "sustained_boost" else None
                write_run(root, f"synth{d}", method, seed, final, epochs=epochs, tag=tag, classifiers=clf)
                count += 1
    return count
