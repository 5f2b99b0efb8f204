"""``mmbench reproduce`` end to end on real small runs: the paper's figures from mfeat runs
(sustained_boost varying sigma and lambda and logging its first classifiers), and the
paper-shaped Table 1 from runs on the file-backed CREMA-D fixture."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from mmbench.benchmark.store import load_results, read_history
from mmbench.reporting import figures

from conftest import invoke

TINY = {"epochs": 2, "data.limit_train_per_class": 10}
BOOST = {**TINY, "method.log_first_classifier": True}

FIGURE_SUITE = f"""
[suite]
seeds = 1
[paper]
figures = ["sensitivity", "classifiers"]
[[runs]]
datasets = ["mfeat"]
methods = ["sustained_boost"]
set = {json.dumps(BOOST).replace('": ', '" = ')}
[[runs]]
datasets = ["mfeat"]
methods = ["sustained_boost"]
set = {json.dumps({**BOOST, "method.sigma": 0.8}).replace('": ', '" = ')}
[[runs]]
datasets = ["mfeat"]
methods = ["sustained_boost"]
set = {json.dumps({**BOOST, "method.smoothing": 0.5}).replace('": ', '" = ')}
"""


@pytest.fixture(scope="module")
def figure_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("paper_figs")
    suite = base / "figs.toml"
    suite.write_text(FIGURE_SUITE)
    out = invoke("reproduce", str(suite), "--results", str(base / "res"), "--out", str(base / "out"))
    assert out.exit_code == 0, out.output
    # Fig. 5 through `mmbench figure`: two of the runs (a panel per run and modality), from best.ckpt
    runs = sorted(p.name for p in (base / "res" / "mfeat").iterdir() if "smoothing" not in p.name)
    tsne = invoke("figure", "tsne", "--results", str(base / "res"), "--out", str(base / "out"), "--points", "100",
                  *[a for r in runs for a in ("-m", r)])
    assert tsne.exit_code == 0, tsne.output
    return base, out.output


def test_reproduce_writes_every_figure_as_pdf_and_png(figure_runs):
    base, output = figure_runs
    assert sorted(r["status"] for r in load_results(base / "res")) == ["finished"] * 3, output
    stems = ["sensitivity_mfeat", "tsne_mfeat"] + [f"classifiers_mfeat_{p.name}" for p in (base / "res" / "mfeat").iterdir()]
    for stem in stems:  # Fig. 4: one figure per run (configuration)
        for ext in ("pdf", "png"):
            assert (base / "out" / f"{stem}.{ext}").stat().st_size > 5000
        assert (base / "out" / f"{stem}.txt").read_text().strip()
    assert "left out" not in (base / "out" / "sensitivity_mfeat.txt").read_text()  # every run is a point
    npz = sorted(p.name for p in (base / "out" / "embeddings").glob("mfeat_*.npz"))
    assert len(npz) == 2 and all(n.startswith("mfeat_sustained_boost") for n in npz)
    with np.load(base / "out" / "embeddings" / npz[0]) as z:
        # 100 of the 300 test items, 10 of each class
        assert z["image"].shape[0] == z["fourier"].shape[0] == 100 and np.bincount(z["labels"]).tolist() == [10] * 10


def test_figures_have_the_papers_panels(figure_runs):
    base, _ = figure_runs
    records = load_results(base / "res")
    boost = [r for r in records if r["method"] == "sustained_boost"]
    fig, _ = figures.sensitivity_figure(boost)
    assert [ax.get_xlabel() for ax in fig.axes] == ["ACA threshold $\\sigma$", "smoothing factor $\\lambda$"]
    sigma_line = fig.axes[0].lines[0].get_xdata()  # fusion, over sigma 0.8 and the default 1.0
    assert list(sigma_line) == [0.8, 1.0]
    assert list(fig.axes[1].lines[0].get_xdata()) == [0.2, 0.5]
    runs = figures.first_classifier_runs(records)
    assert len(runs) == 3
    with pytest.raises(ValueError, match="3 configurations"):  # a figure never mixes runs
        figures.classifiers_figure(records)
    base_run = next(r for r in runs if "sigma" not in r and "smoothing" not in r)
    fig, _ = figures.classifiers_figure(runs[base_run])
    assert [ax.get_title() for ax in fig.axes] == [
        "Image: full ensemble vs first classifier", "Fourier: full ensemble vs first classifier",
        "classifiers per modality"]
    counts = {line.get_label(): list(line.get_ydata()) for line in fig.axes[2].lines}
    history = read_history(next(p for p in (base / "res" / "mfeat").glob("sustained_boost-*/seed-0")
                                if "sigma" not in p.parent.name and "smoothing" not in p.parent.name) / "history.jsonl")
    assert counts == {m.capitalize(): [h["diagnostics"]["classifiers"][m] for h in history] for m in ("image", "fourier")}
    assert max(counts["Fourier"] + counts["Image"]) == 2  # ACA added one classifier after epoch 0
    emb = {}
    for path in sorted((base / "out" / "embeddings").glob("*.npz")):
        with np.load(path) as z:  # 50 items: a quick t-SNE
            emb[path.stem] = {m: (z[m][:50], z["labels"][:50]) for m in ("image", "fourier")}
    fig, _ = figures.tsne_figure(emb, seed=0)
    panels = [ax for ax in fig.axes if ax.collections]
    assert len(panels) == 4 and [ax.get_title() for ax in panels[:2]] == ["Image", "Fourier"]
    assert [ax.get_ylabel() for ax in panels[::2]] == sorted(emb)


def test_first_classifier_heads_leave_training_and_other_heads_unchanged(figure_runs, tmp_path):
    from mmbench.benchmark.config import resolve_config
    from mmbench.benchmark.trainer import train_run

    base, _ = figure_runs
    logged = next(p for p in (base / "res" / "mfeat").glob("sustained_boost-*/seed-0")
                  if "sigma" not in p.parent.name and "smoothing" not in p.parent.name)
    train_run(resolve_config("mfeat", "sustained_boost", TINY), tmp_path, progress=False, echo=lambda *_: None)
    plain = read_history(next((tmp_path / "mfeat").glob("*/seed-0")) / "history.jsonl")
    with_first = read_history(logged / "history.jsonl")
    for a, b in zip(plain, with_first):
        assert set(b["test"]) == set(a["test"]) | {"image_first", "fourier_first"}
        assert {h: b["test"][h] for h in a["test"]} == a["test"] and a["train"] == b["train"]
        assert a["diagnostics"]["classifiers"] == b["diagnostics"]["classifiers"]
    last = with_first[-1]
    # the image ensemble still has one classifier: its first classifier IS the ensemble
    assert last["diagnostics"]["classifiers"]["image"] > 1 or last["test"]["image_first"] == last["test"]["image"]


def test_report_embeds_the_paper_figures(figure_runs, tmp_path):
    base, _ = figure_runs
    out = invoke("report", "--results", str(base / "res"), "--figures", str(base / "out"), "--jobs", "1",
                 "--out", str(tmp_path / "r.html"))
    assert out.exit_code == 0, out.output
    html = (tmp_path / "r.html").read_text()
    assert "Paper vs mmbench" in html and "paper Fig. 3" in html and "paper Fig. 4" in html
    assert "tsne_mfeat" in html and html.count("data:image/png;base64,") >= 8


@pytest.fixture(scope="module")
def cremad_table(tmp_path_factory):
    base = tmp_path_factory.mktemp("paper_cremad")
    assert invoke("data", "fixture", "cremad", "--out", str(base / "cremad")).exit_code == 0
    suite = base / "t1.toml"
    suite.write_text('[suite]\nseeds = 1\ndatasets = ["cremad"]\nmethods = ["sustained_boost"]\n'
                     'set = { "data.preset" = "smoke", epochs = 1, batch_size = 8 }\n[paper]\ntables = ["table1"]\n')
    out = invoke("reproduce", str(suite), "--root", str(base / "cremad"), "--results", str(base / "res"),
                 "--out", str(base / "out"))
    assert out.exit_code == 0, out.output
    return base


def test_reproduce_table1_on_fixture_runs_prints_ours_reported_and_difference(cremad_table):
    md = (cremad_table / "out" / "table1.md").read_text()
    row = next(r for r in md.splitlines() if r.startswith("| sustained_boost"))
    ours = [json.loads((p / "result.json").read_text())["selection"]["val"]["test"]["fusion"]["acc"]
            for p in sorted((cremad_table / "res" / "cremad").glob("*/seed-*"))]
    mean = 100 * sum(ours) / len(ours)
    assert "sustained_boost-" in row  # the run's own name: its smoke settings are not the paper's
    assert f"{mean:.2f} ± " in row and f"/ 84.41 ({mean - 84.41:+.2f})" in row
    assert "– / 64.65" in md  # gblend: not run, its reported value still shown
    assert (cremad_table / "out" / "table1.html").read_text().startswith("\n<!DOCTYPE html>") or "<html" in (
        cremad_table / "out" / "table1.html").read_text()


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_reproduced_latex_compiles(cremad_table):
    out = cremad_table / "out"
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "table1.tex"], cwd=out,
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]


def test_reproduce_skips_what_is_done(cremad_table):
    base = cremad_table
    out = invoke("reproduce", str(base / "t1.toml"), "--root", str(base / "cremad"), "--results", str(base / "res"),
                 "--out", str(base / "out2"))
    assert out.exit_code == 0, out.output
    assert "already finished" in out.output and (base / "out2" / "table1.md").is_file()
    assert (base / "out2" / "table1.md").read_text() == (base / "out" / "table1.md").read_text()
