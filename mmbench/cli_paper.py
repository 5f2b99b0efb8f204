"""``mmbench figure`` and ``mmbench reproduce``, and the ``--paper`` path of ``mmbench table``
(the sustained-boosting paper's tables and figures from run records; added in ``cli.py``).
Which tables and figures a suite reproduces: its ``[paper]`` section (``mmbench/paper/suites.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mmbench.cli_common import EXIT_FAILED_RUNS, friendly_errors, results_option, results_root
from mmbench.errors import ConfigError, MMBenchError
from mmbench.paper.suites import build_tables, suite_data, suite_paper

FORMATS = {"md": "md", "latex": "tex", "html": "html"}


def _root_map(roots, datasets) -> dict:
    """``--root DATASET=DIR`` entries; a bare ``DIR`` is the root of a one-dataset suite, else a
    folder holding one sub-folder per dataset (like ``$MMBENCH_DATA``)."""
    out = {}
    for item in roots:
        if "=" in item:
            k, v = item.split("=", 1)
            out[k] = v
        elif len(datasets) == 1:
            out[datasets[0]] = item
        else:
            out.update({d: str(Path(item) / d) for d in datasets})
    return out


# ---------------------------------------------------------------------------- table --paper
def paper_table_text(results, datasets, methods, select, split, layout, fmt, standalone, paper_tables) -> str:
    """``mmbench table --paper``: every format; an empty results root still shows the reported values."""
    from mmbench.benchmark.store import load_results
    from mmbench.reporting.paper_table import render_paper_tables, tables_for

    records = load_results(results_root(results), datasets or None, methods or None)
    tables = build_tables(records, tables_for(layout, paper_tables), select, split, datasets or None)
    if not tables:
        raise MMBenchError(f"the paper's tables have no column for dataset(s) {', '.join(datasets)}")
    return render_paper_tables(tables, fmt, standalone)


# ---------------------------------------------------------------------------- figures
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
    from mmbench.reporting import figures

    paths = figures.save(fig, out_dir, stem)
    (Path(out_dir) / f"{stem}.txt").write_text(caption + "\n", encoding="utf-8")
    echo(f"wrote {', '.join(str(p) for p in paths)}")
    return paths


def write_figures(name, records, out_dir, select="val", split="test", seed=0, roots=None, echo=click.echo,
                  points: int = 2000) -> list[Path]:
    """Draw figure ``name`` for every dataset of ``records``; returns the files written."""
    from mmbench.reporting import figures

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


@click.command()
@click.argument("name", type=click.Choice(["sensitivity", "classifiers", "tsne", "tuning"]))
@results_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("figures"), show_default=True)
@click.option("--dataset", "-d", "datasets", multiple=True, help="Only these datasets (repeatable).")
@click.option("--method", "-m", "methods", multiple=True, help="Only these methods or runs (repeatable).")
@click.option("--select", type=click.Choice(["val", "last", "test-best"]), default="val", show_default=True)
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="tsne: the run seed drawn and the t-SNE seed.")
@click.option("--root", "roots", multiple=True, metavar="DATASET=DIR", help="tsne: data root of a dataset, repeatable.")
@click.option("--points", type=click.IntRange(min=0), default=2000, show_default=True,
              help="tsne: at most this many items of the split (stratified, seeded); 0 = all.")
@click.option("--study", "label", default=None, help="tuning: the study label (mmbench tune --status lists them).")
@click.option("--x", "x_axis", type=click.Choice(["trials", "hours"]), default="trials", show_default=True)
@click.option("--estimator", type=click.Choice(["dodge", "unbiased"]), default="dodge", show_default=True)
@click.option("--band", type=click.Choice(["bootstrap", "std"]), default="bootstrap", show_default=True)
@friendly_errors
def figure(name, results, out, datasets, methods, select, split, seed, roots, points, label, x_axis, estimator, band):
    """The paper's figures from run records, as PDF and PNG: sensitivity (Fig. 3), classifiers
    (Fig. 4), tsne (Fig. 5); tuning: expected best validation score against the tuning budget."""
    from mmbench.cli_common import load_records

    if name == "tuning":
        from mmbench.cli_common import results_root
        from mmbench.tuning import curves

        if not label:
            raise MMBenchError("figure tuning needs --study LABEL (mmbench tune --status lists them)")
        curves.write(results_root(results), label, datasets, out, x_axis, estimator, band, click.echo)
        return

    records = load_records(results, datasets, methods)
    write_figures(name, records, out, select, split, seed, _root_map(roots, sorted({r["dataset"] for r in records})),
                  points=points)


# ---------------------------------------------------------------------------- reproduce
def _dry_run(jobs, root_dir, bench_path, echo) -> None:
    from mmbench.benchmark.launch import job_config, plan

    todo, done = plan(jobs, root_dir, refuse=False)
    for o in done:
        echo(f"  skip    {o.job.label()}: {o.reason}")
    for j in todo:
        echo(f"  pending {j.label()}")
    echo(_estimate_text(todo, root_dir, bench_path, job_config))


def _estimate_text(todo, root_dir, bench_path, job_config) -> str:
    """The GPU-hours line of ``--dry-run`` (see ``mmbench.benchmark.estimate``)."""
    from mmbench.benchmark import estimate
    from mmbench.benchmark.registry import get_dataset

    if not todo:
        return "nothing to train"
    if bench_path is None or not Path(bench_path).is_file():
        return (f"estimated GPU-hours: unknown (no `mmbench bench` figures at {bench_path}; write them with "
                "`mmbench bench --dataset D --method M --device cuda --append FILE` and pass --bench FILE)")
    figures = estimate.read_bench_figures(bench_path)
    total, unknown, sizes = 0.0, {}, {}
    for job in todo:
        cfg, _ = job_config(job, root_dir)
        step, why = estimate.lookup_step(figures, job.dataset, job.method, cfg.train.batch_size)
        if step is not None and job.dataset not in sizes:
            try:
                spec = get_dataset(job.dataset)
                sizes[job.dataset] = len(spec.splits(spec.resolve_root(job.root), cfg.data)["train"])
            except Exception as exc:  # noqa: BLE001 - missing data: the size is unknown, not guessed
                sizes[job.dataset] = f"training-set size unknown ({type(exc).__name__}: {str(exc)[:80]})"
        n = sizes.get(job.dataset)
        if step is None or not isinstance(n, int):
            unknown.setdefault(why if step is None else n, []).append(job)
            continue
        total += estimate.run_hours(step, n, cfg.train.batch_size, cfg.train.epochs)
    known = len(todo) - sum(len(v) for v in unknown.values())
    lines = [f"estimated GPU-hours (training steps only, from {bench_path}): "
             + (f"{total:.2f} for {known} of {len(todo)} pending runs" if known else "unknown")]
    for why, jobs in unknown.items():
        lines.append(f"  unknown for {len(jobs)} run(s): {why}")
    return "\n".join(lines)


@click.command()
@click.argument("suite")
@click.option("--root", "roots", multiple=True, metavar="[DATASET=]DIR",
              help="Data roots: DATASET=DIR (repeatable), or one DIR holding a folder per dataset.")
@results_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the tables and figures go (default RESULTS/paper/SUITE).")
@click.option("--jobs", "n_jobs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override for every run, repeatable.")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Replace the suite's seed count.")
@click.option("--device", default="auto", show_default=True)
@click.option("--select", type=click.Choice(["val", "last", "test-best"]), default="val", show_default=True)
@click.option("--dry-run", is_flag=True, help="List what would be trained and the estimated GPU-hours.")
@click.option("--bench", "bench_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="`mmbench bench --append` output to estimate from (default RESULTS/bench.md).")
@friendly_errors
def reproduce(suite, roots, results, out, n_jobs, sets, seeds, device, select, dry_run, bench_path):
    """Run a paper SUITE (finished runs skipped), then write its paper-shaped tables (md, tex,
    html) and, for figure suites, its figures (PDF, PNG)."""
    from mmbench.benchmark.config import parse_overrides
    from mmbench.benchmark.launch import job_config, summarise_outcomes, sweep_local
    from mmbench.benchmark.store import load_results
    from mmbench.benchmark.suites import load_suite

    paper = suite_paper(suite)
    if not paper:
        raise ConfigError(f"suite {suite!r} has no [paper] section: `mmbench reproduce` takes a paper_* suite "
                          "(`mmbench sweep` runs any suite)")
    datasets = sorted({e for r in suite_data(suite).get("runs", []) for e in r.get("datasets", [])}
                      | set(suite_data(suite).get("suite", {}).get("datasets", [])))
    root_map = _root_map(roots, datasets)
    extra = parse_overrides(sets)
    s = load_suite(suite, seeds, root_map)
    jobs = [j.with_overrides(extra) for j in s.jobs]
    root_dir = results_root(results)
    click.echo(f"suite {s.name}: {len(jobs)} runs -> {root_dir}")
    if dry_run:
        _dry_run(jobs, root_dir, bench_path or root_dir / "bench.md", click.echo)
        return
    outcomes = sweep_local(jobs, root_dir, n_jobs, device, echo=click.echo)  # --jobs 1: in this process
    click.echo(summarise_outcomes(outcomes))
    out = out or root_dir / "paper" / s.name
    names = {(j.dataset, job_config(j, root_dir)[0].run_name) for j in jobs}
    records = [r for r in load_results(root_dir, datasets) if (r["dataset"], r["run"]) in names]
    _write_artefacts(paper, records, out, select, extra, root_map)
    if any(o.status == "failed" for o in outcomes):
        sys.exit(EXIT_FAILED_RUNS)


def _write_artefacts(paper: dict, records, out: Path, select: str, extra: dict, roots: dict) -> None:
    from mmbench.reporting.paper_table import render_paper_tables

    out.mkdir(parents=True, exist_ok=True)
    if paper.get("tables"):
        tables = build_tables(records, paper["tables"], select, "test", extra=extra)
        for fmt, ext in FORMATS.items():
            path = out / f"{'_'.join(paper['tables'])}.{ext}"
            path.write_text(render_paper_tables(tables, fmt, standalone=fmt == "latex"), encoding="utf-8")
            click.echo(f"wrote {path}")
    for name in paper.get("figures", []):
        write_figures(name, records, out, select, "test", 0, roots)
