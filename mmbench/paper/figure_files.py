"""The paper's figures as files, from run records (``mmbench figure``, ``mmbench reproduce``):
which records each figure draws, the t-SNE embeddings of the selected checkpoints, the files
written. The drawing itself is ``mmbench.paper.figures``.
"""

from __future__ import annotations

from pathlib import Path

from mmbench.results.errors import ConfigError, MMBenchError


def _subsample(labels, points: int, seed: int):
    """At most ``points`` positions, the same share of every class (seeded), in split order."""
    import numpy as np

    if points <= 0 or len(labels) <= points:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[: max(1, round(points * np.mean(labels == c)))]
            for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def _tsne_embeddings(records, select, split, seed, roots, out_dir, echo, points=2000) -> tuple[dict, list | None]:
    """``{run: {modality: (features, labels)}}`` of one seed per run (``seed`` where it has one),
    from ``best.ckpt`` (at most ``points`` items of the split, stratified), and the dataset's class
    names; the arrays are also kept in ``out_dir/embeddings/<dataset>_<run>_seed<k>.npz``."""
    import numpy as np

    from mmbench.benchmark.restore import extract_features, load_selected

    emb, names = {}, None
    for rec in sorted(records, key=lambda r: (r["run"], r["seed"] != seed, r["seed"])):
        if rec.get("status") != "finished" or rec["run"] in emb:
            continue
        restored = load_selected(rec["path"], rule=select, device="cpu", root=roots.get(rec["dataset"]))
        got = extract_features(restored, split)
        names = names or list(getattr(restored.spec, "class_names", ()) or ()) or None
        keep = _subsample(got["labels"].numpy(), points, seed)
        labels = got["labels"].numpy()[keep]
        emb[rec["run"]] = {m: (f.float().numpy()[keep], labels) for m, f in got["features"].items()}
        path = Path(out_dir) / "embeddings" / f"{rec['dataset']}_{rec['run']}_seed{rec['seed']}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, labels=labels, **{m: f for m, (f, _) in emb[rec["run"]].items()})
        echo(f"embeddings of {rec['dataset']}/{rec['run']} seed {rec['seed']} (epoch {restored.epoch}, {select}) -> {path}")
    return emb, names


def _row_labels(method_of: dict[str, str]) -> dict[str, str]:
    """Short row labels: the method, plus what sets a run apart from the other runs of that
    method (the part of its name after their common prefix)."""
    import os

    out = {}
    for run, method in method_of.items():
        same = [r for r, m in method_of.items() if m == method]
        common = os.path.commonprefix(same) if len(same) > 1 else run
        rest = run[len(common):].strip("-_")
        out[run] = f"{method}\n{rest}" if rest else method
    return out


def _save(fig, caption: str, out_dir, stem: str, echo) -> list[Path]:
    from mmbench.paper import figures

    paths = figures.save(fig, out_dir, stem)
    (Path(out_dir) / f"{stem}.txt").write_text(caption + "\n", encoding="utf-8")
    echo(f"wrote {', '.join(str(p) for p in paths)}")
    return paths


def write_figures(name, records, out_dir, select="val", split="test", seed=0, roots=None, echo=print,
                  points: int = 2000) -> list[Path]:
    """Draw figure ``name`` for every dataset of ``records`` (the paper's Fig. 3 ``sensitivity``,
    Fig. 4 ``classifiers``, Fig. 5 ``tsne``), each as PDF and PNG with its caption in a ``.txt``;
    returns the files written."""
    from mmbench.paper import figures

    if name not in figures.FIGURES:
        raise ConfigError(f"unknown figure {name!r}; choose {', '.join(figures.FIGURES)}")
    written = []
    for dataset in sorted({r["dataset"] for r in records if r.get("status") == "finished"}):
        recs = [r for r in records if r["dataset"] == dataset]
        if name == "sensitivity":
            fig, caption = figures.sensitivity_figure([r for r in recs if r["method"] == "sustained_boost"], select=select,
                                                      split=split)
        elif name == "classifiers":
            runs = figures.first_classifier_runs(recs)
            if not runs:
                echo(f"{dataset}: no run logs first-classifier heads (--set method.log_first_classifier=true)")
            for run, run_recs in runs.items():
                fig, caption = figures.classifiers_figure(run_recs, split)
                stem = f"{name}_{dataset}" if len(runs) == 1 else f"{name}_{dataset}_{run}"
                written += _save(fig, caption, out_dir, stem, echo)
            continue
        else:
            emb, names = _tsne_embeddings(recs, select, split, seed, roots or {}, out_dir, echo, points)
            method_of = {r["run"]: r["method"] for r in recs if r["run"] in emb}
            fig, caption = figures.tsne_figure(emb, seed, names, row_labels=_row_labels(method_of))
        written += _save(fig, caption, out_dir, f"{name}_{dataset}", echo)
    if not written:
        raise MMBenchError(f"no finished run records to draw {name} from")
    return written
