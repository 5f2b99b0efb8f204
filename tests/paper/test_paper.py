"""The paper's suites, reported numbers and paper-shaped tables (no training here; the real
runs are in test_paper_runs.py)."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess

import pytest
from reporting_fixtures import write_run

from mmbench.benchmark import estimate
from mmbench.benchmark.suites import load_suite
from mmbench.paper.reported import lookup, reported_values, table_values
from mmbench.reporting.paper_table import build_paper_table, render_paper_tables

from conftest import invoke

ALL = {"unimodal", "joint", "gblend", "mslr", "ogm_ge", "pmr", "agm", "mmpareto", "mla", "reconboost", "sustained_boost"}


def _grid(name):
    return {(j.dataset, j.method) for j in load_suite(name).jobs}, {j.seed for j in load_suite(name).jobs}


def test_paper_table1_suite_is_the_papers_table1():
    grid, seeds = _grid("paper_table1")
    assert seeds == set(range(5))
    assert {d for d, _ in grid} == {"cremad", "kinetics_sounds", "nvgesture"}
    for d in ("cremad", "kinetics_sounds"):
        assert {m for dd, m in grid if dd == d} == ALL
    assert {m for d, m in grid if d == "nvgesture"} == ALL - {"ogm_ge", "pmr"}


@pytest.mark.parametrize("name, datasets, methods", [
    ("paper_table2", {"twitter15", "sarcasm"}, ALL),
    ("paper_table3", {"vggsound"}, {"unimodal", "agm", "mla", "mmpareto", "reconboost", "sustained_boost"}),
    ("paper_table4", {"cremad"}, {"sustained_boost"}),
    ("paper_fig5", {"cremad"}, {"joint", "reconboost", "sustained_boost"}),
])
def test_paper_suites_list_the_datasets_and_methods_of_their_table(name, datasets, methods):
    grid, _ = _grid(name)
    assert {d for d, _ in grid} == datasets and {m for _, m in grid} == methods


def test_every_paper_suite_resolves_and_dry_run_lists_it(tmp_path):
    for name in ("paper_table1", "paper_table2", "paper_table3", "paper_table4", "paper_table5", "paper_table6",
                 "paper_fig3", "paper_fig4", "paper_fig5"):
        out = invoke("reproduce", name, "--dry-run", "--results", str(tmp_path))
        assert out.exit_code == 0, out.output
        assert f"suite {name}:" in out.output and "pending" in out.output
        assert "estimated GPU-hours" in out.output and "unknown" in out.output  # no bench figures here


def test_sensitivity_and_fig4_suites_vary_what_the_figures_need():
    sets = [j.overrides_dict for j in load_suite("paper_fig3").jobs]
    sigmas = {s.get("method.sigma", 1.0) for s in sets if "method.smoothing" not in s}
    lambdas = {s.get("method.smoothing", 0.2) for s in sets if "method.sigma" not in s}
    assert len(sigmas) >= 5 and 1.0 in sigmas and {0.1, 0.2, 0.33, 0.5, 1.0} <= lambdas
    assert all(j.overrides_dict["method.log_first_classifier"] is True for j in load_suite("paper_fig4").jobs)


def test_reported_values_ship_with_the_package_with_table_row_and_column():
    values = reported_values()
    assert len(values) == 195 and {v.table for v in values} == {f"table{i}" for i in range(1, 7)}
    r = lookup("table1", "cremad", "sustained_boost", "fusion", "acc")
    assert r.value == pytest.approx(0.8441)
    assert lookup("table1", "nvgesture", "ogm_ge", "fusion", "acc").value is None  # the paper's dash
    assert lookup("table5", "cremad", "sustained_boost", "video", "acc", "fixed classifiers audio 1 video 12").value == 0.6277
    assert {v.metric for v in table_values("table2")} == {"acc", "f1"}


def test_empty_results_show_the_reported_values(tmp_path):
    out = invoke("table", "--layout", "table1", "--paper", "--results", str(tmp_path / "none"))
    assert out.exit_code == 0, out.output
    line = next(row for row in out.output.splitlines() if row.startswith("| sustained_boost |"))
    assert "– / 84.41" in line and "– / 67.88" in line  # our cell "–", the paper's value
    assert "### nvgesture" in out.output and "| Multi | RGB | OF | Depth |" in out.output
    assert "Table 3: VGGSound" in out.output
    pmr_nv = [r for r in out.output.split("### nvgesture")[1].splitlines() if r.startswith("| pmr |")][0]
    assert pmr_nv.count("–") == 5  # n and all four cells are dashes, as in the paper


def _cremad_records(root):
    # CREMA-D-shaped records: 2 seeds of sustained_boost at 80 / 81 % fusion, a unimodal reference
    write_run(root, "cremad", "sustained_boost", 0, {"fusion": 0.80, "audio": 0.60, "video": 0.55}, epochs=2)
    write_run(root, "cremad", "sustained_boost", 1, {"fusion": 0.80, "audio": 0.60, "video": 0.55}, epochs=2)
    write_run(root, "cremad", "unimodal", 0, {"fusion": 0.6, "audio": 0.6}, epochs=2, tag="audio")


def test_cells_hold_ours_reported_and_the_difference(tmp_path):
    from mmbench.benchmark.store import load_results

    _cremad_records(tmp_path)
    t = build_paper_table("table1", load_results(tmp_path), select="last")
    row = next(r for r in t["rows"] if r["label"] == "sustained_boost")
    fusion = row["groups"][0]["cells"][0]
    # write_run: last epoch = final + seed offset (-1.2 / 0.0 points)
    assert fusion["mean"] == pytest.approx(80 - 0.6) and fusion["std"] == pytest.approx(0.8485, abs=1e-3)
    assert fusion["reported"] == pytest.approx(84.41) and fusion["diff"] == pytest.approx(79.4 - 84.41)
    assert t["rows"][0]["label"] == "unimodal-audio" and t["rows"][0]["groups"][0]["cells"][0]["reported"] is None
    text = render_paper_tables([t], "md")
    assert "79.40 ± 0.85 / 84.41 (-5.01)" in text
    rows = list(csv.DictReader(io.StringIO(render_paper_tables([t], "csv"))))
    cell = next(r for r in rows if r["row"] == "sustained_boost" and r["head"] == "fusion" and r["dataset"] == "cremad")
    assert float(cell["diff"]) == pytest.approx(-5.01) and cell["n"] == "2"
    html = render_paper_tables([t], "html")
    assert "<html" in html and 'class="diff neg"' in html


def test_runs_with_different_configs_are_never_one_row(tmp_path):
    from mmbench.benchmark.store import load_results

    for seed, ident in ((0, "a"), (1, "b")):  # two configs under one run name
        write_run(tmp_path, "cremad", "mla", seed, {"fusion": 0.7, "audio": 0.5, "video": 0.5}, epochs=2, identity=ident)
    records = load_results(tmp_path)
    hashes = {r["identity"]["hash"][:8] for r in records}
    t = build_paper_table("table1", records)
    mla = [r for r in t["rows"] if r["label"].startswith("mla")]
    assert len(mla) == 2 and all(r["groups"][0]["n"] == 1 for r in mla) and len(hashes) == 2
    assert {r["label"].split("(config cremad ")[1][:8] for r in mla} == hashes


def test_one_config_per_dataset_is_one_row(tmp_path):
    from mmbench.benchmark.store import load_results

    for dataset in ("cremad", "kinetics_sounds"):  # the identity hash differs per dataset
        write_run(tmp_path, dataset, "mla", 0, {"fusion": 0.7, "audio": 0.5, "video": 0.5}, epochs=2)
    mla = [r for r in build_paper_table("table1", load_results(tmp_path))["rows"] if r["label"].startswith("mla")]
    assert [r["label"] for r in mla] == ["mla"] and mla[0]["groups"][0]["n"] == mla[0]["groups"][1]["n"] == 1


def test_ablation_rows_match_the_suite_runs(tmp_path):

    write_run(tmp_path, "cremad", "sustained_boost", 0, {"fusion": 0.8, "audio": 0.6, "video": 0.6}, tag="fixed-a1-v12")
    write_run(tmp_path, "cremad", "sustained_boost", 0, {"fusion": 0.82, "audio": 0.6, "video": 0.6})
    out = invoke("table", "--paper", "--paper-table", "table5", "--select", "last", "--results", str(tmp_path))
    assert out.exit_code == 0, out.output
    lines = {r.split(" | ")[0].lstrip("| "): r for r in out.output.splitlines() if r.startswith("| ")}
    # write_run: the last epoch of seed 0 is the final value - 1.2 points
    assert "78.80 ± 0.00 / 81.18 (-2.38)" in lines["fixed classifiers audio 1 video 12"]
    assert "80.80 ± 0.00 / 84.41 (-3.61)" in lines["adaptive classifiers audio 1 video 10"]
    assert "– / 80.91" in lines["fixed classifiers audio 1 video 10"]


def _latex_ready() -> bool:
    return shutil.which("pdflatex") is not None and shutil.which("kpsewhich") is not None and all(
        subprocess.run(["kpsewhich", s], capture_output=True, check=False).returncode == 0
        for s in ("booktabs.sty", "graphicx.sty", "geometry.sty"))


@pytest.mark.skipif(not _latex_ready(), reason="pdflatex or booktabs/graphicx/geometry not installed")
def test_paper_latex_compiles_with_pdflatex(tmp_path):
    _cremad_records(tmp_path / "res")
    out = invoke("table", "--paper", *[f"--paper-table=table{i}" for i in range(1, 7)], "--format", "latex",
                 "--standalone", "--results", str(tmp_path / "res"), "--out", str(tmp_path / "p.tex"))
    assert out.exit_code == 0, out.output
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "p.tex"], cwd=tmp_path,
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "p.pdf").stat().st_size > 1000


def test_gpu_hours_come_from_gpu_bench_figures_only(tmp_path):
    bench = tmp_path / "bench.md"
    bench.write_text(
        "### `mfeat` step time — CPU x86_64 x2 threads=2, torch 2.14.1\n\n"
        "| method | batch | step ms (median) | data wait ms |\n|---|---|---|---|\n| joint | 64 | 9.00 | 0.1 |\n\n"
        "### `mfeat` step time — NVIDIA H200, torch 2.14.1\n\n"
        "| method | batch | step ms (median) | data wait ms |\n|---|---|---|---|\n| joint | 64 | 2.00 | 0.1 |\n"
    )
    figs = estimate.read_bench_figures(bench)
    assert [(f.method, f.step_ms, f.on_gpu) for f in figs] == [("joint", 9.0, False), ("joint", 2.0, True)]
    assert estimate.lookup_step(figs, "mfeat", "joint", 64)[0] == pytest.approx(0.002)
    assert estimate.lookup_step(figs, "mfeat", "joint", 32)[0] is None
    assert estimate.lookup_step(figs, "mfeat", "mla", 64) == (None, "no bench figure for mfeat/mla")
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nseeds = 2\ndatasets = ["mfeat"]\nmethods = ["joint", "mla"]\n[paper]\ntables = []\n')
    out = invoke("reproduce", str(suite), "--dry-run", "--results", str(tmp_path / "r"), "--bench", str(bench))
    assert out.exit_code == 0, out.output
    # mfeat: 1,400 train rows, batch 64 -> 22 steps x 20 epochs x 2 ms = 0.88 s per run, 2 seeds
    assert f"{2 * 0.002 * 22 * 20 / 3600:.2f} for 2 of 4 pending runs" in out.output
    assert "unknown for 2 run(s): no bench figure for mfeat/mla" in out.output


def test_reproduce_refuses_a_suite_without_paper_section():
    out = invoke("reproduce", "smoke", "--dry-run")
    assert out.exit_code == 2 and "no [paper] section" in out.output


def test_paper_table_of_a_dataset_the_paper_lacks_is_one_clear_error(tmp_path):
    out = invoke("table", "--paper", "-d", "mfeat", "--results", str(tmp_path))
    assert out.exit_code == 2 and out.output.startswith("error: the paper's tables have no column for dataset(s) mfeat")


def test_reproduce_refuses_a_bad_setting_before_training(tmp_path):
    out = invoke("reproduce", "paper_fig4", "--set", "method.no_such_key=1", "--results", str(tmp_path))
    assert out.exit_code == 2 and out.output.count("\n") <= 2 and "no_such_key" in out.output
    assert not any(tmp_path.rglob("*.json"))
