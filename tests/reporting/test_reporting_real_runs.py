"""Tables and the report on real run records: joint and a unimodal reference trained on mfeat."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.store import load_results
from mmbench.benchmark.trainer import train_run
from mmbench.cli import cli
from mmbench.reporting.aggregate import build_tables

pytestmark = pytest.mark.slow  # end-to-end sessions: every test of this file is in the slow tier

SMOKE = {"epochs": 2, "data.limit_train_per_class": 20}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("mfeat-results")
    for seed in (0, 1):
        train_run(resolve_config("mfeat", "joint", dict(SMOKE), seed=seed, tag="smoke", device="cpu"), root, progress=False)
    uni = dict(SMOKE, **{"method.modality": "fourier"})
    train_run(resolve_config("mfeat", "unimodal", uni, seed=0, tag="fourier", device="cpu"), root, progress=False)
    return root


def test_table_of_trained_mfeat_runs_has_every_head_and_the_selected_epoch_values(results):
    records = load_results(results)
    assert sorted({r["run"] for r in records}) == ["joint-smoke", "unimodal-fourier"]
    ctx = build_tables(records, "table1", metrics=["acc"])
    (group,) = ctx["groups"]
    assert group["dataset"] == "mfeat"
    assert [c["head"] for c in group["columns"]] == ["fusion", "image", "fourier"]
    joint = next(r for r in ctx["rows"] if r["run"] == "joint-smoke")["groups"][0]
    uni = next(r for r in ctx["rows"] if r["run"] == "unimodal-fourier")["groups"][0]
    assert joint["n_label"] == "2" and uni["n_label"] == "1/2"
    fusion = [r["selection"]["val"]["test"]["fusion"]["acc"] for r in records if r["run"] == "joint-smoke"]
    assert joint["cells"][0]["mean"] == pytest.approx(100 * sum(fusion) / 2, abs=1e-6)
    assert uni["cells"][1] is None  # the fourier reference has no image head


def test_report_of_trained_mfeat_runs_embeds_its_figures(results, tmp_path):
    out = CliRunner().invoke(cli, ["report", "--results", str(results), "--out", str(tmp_path / "r.html")])
    assert out.exit_code == 0, out.output
    html = (tmp_path / "r.html").read_text()
    # accuracy curves, imbalance ratio, unimodal-vs-fusion bars, accuracy against cost (joint logs
    # no classifier counts; the runs have no probe.json, so no probe figure)
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 4
    assert "Accuracy against cost" in html and "Imbalance scores of the linear probes" not in html
