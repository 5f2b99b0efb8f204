"""The notebook API: `mmbench.run` trains in-process and returns the records, `load_results` is a
tidy frame of them (damaged records named, not dropped), `mmbench.table` is what `mmbench table`
prints, `mmbench export` writes the frame as parquet or csv, and `import mmbench` stays light."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

import mmbench
from mmbench.benchmark import store

from conftest import invoke

RUN = "joint-epochs2_limit_train_per_class20"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """joint on mfeat, tiny settings, seeds 0 and 1, trained through ``mmbench.run``."""
    root = tmp_path_factory.mktemp("api") / "results"
    records = mmbench.run(
        "joint", "mfeat", seeds=2, results_dir=root, epochs=2, data__limit_train_per_class=20
    )
    return root, records


@pytest.mark.slow
def test_run_returns_the_records_it_wrote(trained):
    root, records = trained
    assert [(r["seed"], r["status"]) for r in records] == [(0, "finished"), (1, "finished")]
    for rec in records:
        on_disk = json.loads((root / "mfeat" / RUN / f"seed-{rec['seed']}" / store.RESULT).read_text())
        assert rec["selection"] == on_disk["selection"] and rec["identity"] == on_disk["identity"]
    again = mmbench.run(
        "joint", "mfeat", seeds=[1], results_dir=root, epochs=2, data__limit_train_per_class=20
    )
    assert again[0]["selection"] == records[1]["selection"]  # finished: skipped, its record returned


@pytest.mark.slow
def test_load_results_is_one_row_per_run_seed_head_rule_split_metric(trained):
    root, records = trained
    df = mmbench.load_results(root)
    assert list(df.columns) == mmbench.api.COLUMNS
    # 2 seeds x 3 rules x 2 splits x 3 heads (fusion, image, fourier) x 3 metrics
    assert len(df) == 2 * 3 * 2 * 3 * 3
    assert not df.duplicated(["run", "seed", "rule", "split", "head", "metric"]).any()
    for rec in records:
        for rule, sel in rec["selection"].items():
            for split in ("val", "test"):
                for head, metrics in sel[split].items():
                    for metric, value in metrics.items():
                        row = df[
                            (df.seed == rec["seed"])
                            & (df.rule == rule)
                            & (df.split == split)
                            & (df["head"] == head)
                            & (df.metric == metric)
                        ]
                        assert row["value"].tolist() == [value] and row["epoch"].tolist() == [sel["epoch"]]
    assert set(df.identity_hash) == {records[0]["identity"]["hash"]}
    assert df[df.rule == "val"].reported.all() and not df[df.rule == "last"].reported.any()
    assert df.attrs["unreadable"] == [] and df.attrs["partial"] == [] and df.attrs["failed"] == []
    wide = mmbench.load_results(root, rules="val", splits="test", metrics=["acc"], config=True)
    assert (
        len(wide) == 2 * 3 and set(wide["config.train.epochs"]) == {2} and "config.method.head_init" in wide
    )


@pytest.mark.slow
def test_load_results_names_a_damaged_record_and_keeps_the_good_rows(trained, tmp_path):
    root, records = trained
    copy = tmp_path / "results"
    shutil.copytree(root, copy)
    bad = copy / "mfeat" / RUN / "seed-1" / store.RESULT
    bad.write_text('{"dataset": "mfeat", "method": "joint", "seed": 1, "status": "fini')
    with pytest.warns(UserWarning, match=r"1 run record\(s\) could not be read.*seed-1/result.json"):
        df = mmbench.load_results(copy)
    assert set(df.seed) == {0} and len(df) == 3 * 2 * 3 * 3
    (problem,) = df.attrs["unreadable"]
    assert problem["path"] == str(bad) and "not valid JSON" in problem["message"]


@pytest.mark.slow
def test_table_is_the_table_the_cli_prints(trained):
    root, _ = trained
    t = mmbench.table(root)
    assert t.data["rows"] and t.data["layout"] == "table1"
    res = invoke("table", "--results", str(root))
    assert res.exit_code == 0 and res.output.strip() == t.render("md").strip()
    res = invoke("table", "--results", str(root), "--layout", "table2", "--format", "latex")
    assert res.output.strip() == mmbench.table(root, layout="table2").render("latex").strip()
    assert "<table" in t._repr_html_()


@pytest.mark.slow
def test_export_writes_the_frame_as_parquet_and_csv(trained, tmp_path):
    root, _ = trained
    frame = mmbench.load_results(root)
    res = invoke(
        "export", "--format", "parquet", "--out", str(tmp_path / "r.parquet"), "--results", str(root)
    )
    assert res.exit_code == 0 and f"{len(frame)} rows" in res.output, res.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "r.parquet"), frame, check_dtype=False)
    res = invoke(
        "export", "--format", "csv", "--out", str(tmp_path / "r.csv"), "--results", str(root), "--config"
    )
    back = pd.read_csv(tmp_path / "r.csv")
    assert len(back) == len(frame) and "config.train.lr" in back
    assert back["value"].tolist() == pytest.approx(frame["value"].tolist(), rel=1e-12)


def test_parquet_without_pyarrow_is_refused_in_one_line(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a)
    )
    res = invoke(
        "export", "--format", "parquet", "--out", str(tmp_path / "r.parquet"), "--results", str(tmp_path)
    )
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "pip install" in res.output
    assert not (tmp_path / "r.parquet").exists()


def test_import_mmbench_and_the_cli_load_no_tracker_and_no_notebook_api():
    code = (
        "import sys, mmbench; light = not {'pandas', 'torch', 'mmbench.api'} & set(sys.modules); "
        "import mmbench.cli; "
        "heavy = {'wandb', 'mlflow', 'tensorboard', 'pyarrow', 'mmbench.api'} & set(sys.modules); "
        "print(light, sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True []"
    assert callable(mmbench.load_results) and "load_results" in dir(mmbench)
