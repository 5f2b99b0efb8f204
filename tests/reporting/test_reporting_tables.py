"""Tables: golden files (Markdown, LaTeX, HTML) of every layout on a fixed set of run records,
the numbers behind them, ranking, significance, seed counts, failed runs and per-seed CSV."""

from __future__ import annotations

import html
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reporting_fixtures import write_fixed_records, write_run
from scipy import stats

from mmbench.benchmark.store import load_results
from mmbench.reporting import aggregate
from mmbench.reporting.aggregate import build_tables, render_table

GOLDEN = Path(__file__).parent / "data" / "reporting"
UPDATE = os.environ.get("MMBENCH_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    write_fixed_records(root)
    return load_results(root)


def _cell(ctx, dataset, run, head, metric):
    gi = [g["dataset"] for g in ctx["groups"]].index(dataset)
    g = ctx["groups"][gi]
    ci = [(c["head"], c["metric"]) for c in g["columns"]].index((head, metric))
    row = next(r for r in ctx["rows"] if r["run"] == run)
    return row["groups"][gi]["cells"][ci] if row["groups"][gi] else None


@pytest.mark.parametrize("layout", ["table1", "table2", "long"])
@pytest.mark.parametrize("fmt,ext", [("md", "md"), ("latex", "tex"), ("html", "html")])
def test_table_matches_golden_file(records, layout, fmt, ext):
    text = render_table(records, fmt, None, "val", layout=layout)
    path = GOLDEN / f"{layout}.{ext}"
    if UPDATE:
        path.write_text(text)
    assert text == path.read_text(), f"{path} differs; inspect, then rerun with MMBENCH_UPDATE_GOLDEN=1"


def test_test_best_caption_is_labelled_as_the_papers_protocol(records):
    for fmt in ("md", "latex", "html"):
        text = render_table(records, fmt, ["acc"], "test-best", layout="table2")
        assert "test-best: the papers' protocol" in html.unescape(text)
    assert "test-best" not in render_table(records, "md", ["acc"], "val")


def test_cells_are_mean_and_sample_std_over_seeds_in_percent(records):
    ctx = build_tables(records, "table1")
    # joint on mfeat, selected (last) epoch: fusion test Acc 0.90 + seed offsets (-0.012, 0, 0.009)
    c = _cell(ctx, "mfeat", "joint", "fusion", "acc")
    seeds = np.array([0.888, 0.9, 0.909])
    assert c["mean"] == pytest.approx(100 * seeds.mean(), abs=1e-6)
    assert c["std"] == pytest.approx(100 * seeds.std(ddof=1), abs=1e-6)
    assert c["n"] == 3
    # MAP and MacroF1 come from the same selected epoch (fixture: acc + 0.03, acc - 0.02)
    assert _cell(ctx, "mfeat", "joint", "fusion", "map")["mean"] == pytest.approx(100 * (seeds.mean() + 0.03))
    assert _cell(ctx, "mfeat", "joint", "fusion", "f1")["mean"] == pytest.approx(100 * (seeds.mean() - 0.02))
    # one seed: no spread (shown without ±) and no test against the best
    pmr = _cell(ctx, "avtoy", "pmr", "fusion", "acc")
    assert (pmr["n"], pmr["std"], pmr["p"], pmr["sig"]) == (1, None, None, False)
    md = render_table(records, "md", ["acc"])
    assert "| pmr | 1/3 | 62.80 | 54.80 | 38.80 |" in md


def test_best_is_bold_top_three_shaded_and_ties_share_a_rank(records):
    ctx = build_tables(records, "table1")
    # mfeat fusion Acc: ogm_ge 92.90 (3 seeds) and sustained_boost 92.90 (2 seeds) tie, joint third
    ogm = _cell(ctx, "mfeat", "ogm_ge", "fusion", "acc")
    sub = _cell(ctx, "mfeat", "sustained_boost", "fusion", "acc")
    joint = _cell(ctx, "mfeat", "joint", "fusion", "acc")
    assert (ogm["rank"], sub["rank"], joint["rank"]) == (1, 1, 3)
    assert ogm["best"] and sub["best"] and not joint["best"]
    assert (ogm["shade"], sub["shade"], joint["shade"]) == (1, 1, 3)
    # the unimodal references are shown in the fusion column but not ranked there ...
    uni = _cell(ctx, "mfeat", "unimodal-fourier", "fusion", "acc")
    assert uni["rank"] is None and uni["shade"] == 0 and not uni["best"]
    # ... while they are ranked in their modality's column (unimodal-fourier is the best fourier)
    assert _cell(ctx, "mfeat", "unimodal-fourier", "fourier", "acc")["best"]
    # avtoy video Acc: mla 44.90 > pmr 38.80 > joint 29.90
    assert [_cell(ctx, "avtoy", r, "video", "acc")["rank"] for r in ("mla", "pmr", "joint")] == [1, 2, 3]


def test_welch_mark_against_column_best_matches_scipy(records):
    ctx = build_tables(records, "table1")
    # mfeat fusion Acc: best = ogm_ge (first of the tied best in row order)
    ogm = np.array([0.918, 0.93, 0.939])
    joint = np.array([0.888, 0.9, 0.909])
    sub = np.array([0.923, 0.935])
    expect_joint = stats.ttest_ind(joint, ogm, equal_var=False).pvalue
    expect_sub = stats.ttest_ind(sub, ogm, equal_var=False).pvalue
    assert _cell(ctx, "mfeat", "joint", "fusion", "acc")["p"] == pytest.approx(expect_joint, abs=1e-6)
    assert _cell(ctx, "mfeat", "sustained_boost", "fusion", "acc")["p"] == pytest.approx(expect_sub, abs=1e-6)
    assert expect_joint < 0.05 and _cell(ctx, "mfeat", "joint", "fusion", "acc")["sig"]
    assert expect_sub > 0.05 and not _cell(ctx, "mfeat", "sustained_boost", "fusion", "acc")["sig"]
    assert _cell(ctx, "mfeat", "ogm_ge", "fusion", "acc")["p"] is None
    # a stricter level removes the mark
    strict = build_tables(records, "table1", alpha=expect_joint / 2)
    assert not _cell(strict, "mfeat", "joint", "fusion", "acc")["sig"]


def test_incomplete_groups_show_finished_over_expected_seeds(records):
    ctx = build_tables(records, "table2")
    labels = {(g["dataset"], r["run"]): r["groups"][i]["n_label"]
              for r in ctx["rows"] for i, g in enumerate(ctx["groups"]) if r["groups"][i]}
    assert labels[("mfeat", "sustained_boost")] == "2/3"  # one seed failed
    assert labels[("avtoy", "pmr")] == "1/3"
    assert labels[("mfeat", "joint")] == "3"
    forced = build_tables(records, "table2", expected=5)
    assert forced["rows"][0]["groups"][1]["n_label"] == "3/5"


def test_failed_runs_are_listed_with_their_error(records):
    for fmt in ("md", "latex", "html"):
        text = render_table(records, fmt)
        assert "sustained_boost / seed 2: non-finite loss at epoch 3" in text


def test_rows_follow_the_method_order_and_layouts_choose_columns(records):
    # from the records: unimodal references, the joint baseline, then the methods by name
    ctx = build_tables(records, "table1", metrics=["acc"])
    assert [r["run"] for r in ctx["rows"]] == [
        "unimodal-fourier", "unimodal-image", "joint", "mla", "ogm_ge", "pmr", "sustained_boost"]
    mfeat = ctx["groups"][1]
    assert [c["label"] for c in mfeat["columns"]] == ["fusion", "image", "fourier"]
    t2 = build_tables(records, "table2")
    assert [c["label"] for c in t2["groups"][0]["columns"]] == ["Acc", "MacroF1"]
    t2map = build_tables(records, "table2", metrics=["map"])
    assert [(c["head"], c["metric"]) for c in t2map["groups"][0]["columns"]] == [("fusion", "map")]


def test_csv_exports_per_seed_values(records):
    frame = pd.read_csv(io.StringIO(render_table(records, "csv", ["acc"])))
    joint = frame[(frame["dataset"] == "mfeat") & (frame["run"] == "joint") & (frame["head"] == "fusion")]
    assert joint["seed"].tolist() == [0, 1, 2]
    assert joint["value"].tolist() == pytest.approx([0.888, 0.9, 0.909], abs=1e-6)
    assert set(frame["metric"]) == {"acc"}
    assert "sustained_boost" in set(frame["run"]) and len(frame[frame["run"] == "sustained_boost"]) == 2 * 3


def test_latex_escapes_special_characters(tmp_path):
    write_run(tmp_path, "my_set", "joint", 0, {"fusion": 0.5, "a&b": 0.4, "c": 0.3}, tag="lr0.1%x")
    text = render_table(load_results(tmp_path), "latex")
    assert r"my\_set" in text and r"joint-lr0.1\%x" in text and r"a\&b" in text


def test_reporting_metric_names_agree_with_the_harness():
    from mmbench.benchmark.metrics import METRIC_NAMES

    assert aggregate.METRIC_NAMES == METRIC_NAMES


def test_no_records_renders_a_clear_message():
    assert "No finished runs found." in render_table([], "md")
