"""The CLI end to end: run, rerun, table formats, list, one-line errors."""

import csv
import io

import pytest

from mmbench.benchmark import registry, store
from mmbench.datasets.base import DatasetSpec

from conftest import TINY, invoke

SETS = sum((["--set", s] for s in TINY), [])


@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory):
    results = tmp_path_factory.mktemp("cli") / "results"
    out = invoke("run", "--method", "joint", "--dataset", "mfeat", "--seeds", "3", "--jobs", "1", "--results", str(results), *SETS)
    assert out.exit_code == 0, out.output
    return results, out


def test_run_writes_one_record_per_seed_and_a_summary_line_each(three_seeds):
    results, out = three_seeds
    for seed in range(3):
        d = store.run_dir(results, "mfeat", "joint-epochs2_limit_train_per_class20", seed)
        rec = store.read_json(d / "result.json")
        assert rec["status"] == "finished" and rec["seed"] == seed
        assert set(rec["selection"]) == {"val", "last", "test-best"}
        assert set(rec["selection"]["val"]["test"]) == {"fusion", "image", "fourier"}
        assert set(rec["selection"]["val"]["test"]["fusion"]) == {"acc", "map", "f1"}
        cfg = store.read_json(d / "config.json")
        assert cfg["environment"]["torch"] and cfg["train"]["epochs"] == 2
        assert len(store.read_history(d / "history.jsonl")) == 2
        assert (d / "last.ckpt").is_file()
        assert f"seed {seed}: test acc fusion" in out.output
    assert "done: 3 trained, 0 skipped, 0 failed" in out.output


def test_the_same_command_again_trains_nothing_and_says_so(three_seeds):
    results, _ = three_seeds
    again = invoke("run", "--method", "joint", "--dataset", "mfeat", "--seeds", "3", "--results", str(results), *SETS)
    assert again.exit_code == 0
    assert "nothing to train: all 3 seeds already have records" in again.output
    assert again.output.count("skipped, already finished") == 3


def test_table_prints_mean_std_with_seed_count_for_every_head_and_metric(three_seeds):
    results, _ = three_seeds
    out = invoke("table", "--results", str(results))
    assert out.exit_code == 0, out.output
    header = next(line for line in out.output.splitlines() if line.startswith("| method"))
    for head in ("fusion", "image", "fourier"):
        for metric in ("Acc", "MAP", "MacroF1"):
            assert f"{head} {metric}" in header
    row = next(line for line in out.output.splitlines() if line.startswith("| joint-epochs2"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "3" and all("±" in c for c in cells[2:])
    assert "best validation epoch" in out.output


def test_table_formats_latex_html_csv(three_seeds, tmp_path):
    results, _ = three_seeds
    tex = invoke("table", "--results", str(results), "--format", "latex").output
    assert r"\begin{tabular}" in tex and r"\toprule" in tex
    assert r"joint-epochs2\_limit\_train\_per\_class20" in tex
    html = invoke("table", "--results", str(results), "--format", "html", "--out", str(tmp_path / "t.html"))
    assert html.exit_code == 0 and "<table" in (tmp_path / "t.html").read_text()
    text = invoke("table", "--results", str(results), "--format", "csv", "--metric", "acc", "--select", "last").output
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["seed"] for r in rows} == {"0", "1", "2"} and {r["metric"] for r in rows} == {"acc"}
    assert {r["head"] for r in rows} == {"fusion", "image", "fourier"}
    assert {r["epoch"] for r in rows} == {"1"}


def test_test_best_is_labelled_as_the_papers_protocol(three_seeds):
    results, _ = three_seeds
    out = invoke("table", "--results", str(results), "--select", "test-best").output
    assert "test-best" in out and "papers' protocol" in out


def test_list_methods_and_datasets():
    out = invoke("list", "methods").output
    assert "joint" in out and "unimodal" in out
    out = invoke("list", "datasets").output
    assert "mfeat " in out and "mfeat3" in out


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "-m", "nope", "-d", "mfeat"], "unknown method 'nope'; valid methods: "),
        (["run", "-m", "joint", "-d", "nope"], "unknown dataset 'nope'; valid datasets: "),
        (["run", "-m", "joint", "-d", "mfeat", "--set", "epoch=2"], "unknown --set key 'epoch'; valid keys: "),
        (["run", "-m", "joint", "-d", "mfeat", "--set", "epochs"], "--set expects key=value"),
        (["table", "--results", "/nonexistent/results"], "no run records under /nonexistent/results"),
    ],
)
def test_bad_input_gives_one_line_error_without_traceback(args, expected):
    out = invoke(*args)
    assert out.exit_code == 2
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert "Traceback" not in out.output


class _FolderDataset(DatasetSpec):
    name = "folderset"
    modalities = ("a", "b")
    num_classes = 2


def test_missing_data_root_says_where_the_data_must_go(monkeypatch, results, tmp_path):
    monkeypatch.delenv("MMBENCH_DATA", raising=False)
    with registry.DATASETS.scoped() as datasets:
        datasets.register(_FolderDataset())
        out = invoke("run", "-m", "joint", "-d", "folderset", "--results", str(results))
        assert out.exit_code == 2 and "pass --root DIR or set MMBENCH_DATA" in out.output
        out = invoke("run", "-m", "joint", "-d", "folderset", "--root", str(tmp_path / "absent"),
                     "--results", str(results))
    assert "folderset" not in registry.dataset_names()
    assert out.exit_code == 2
    assert f"data root {tmp_path / 'absent'} does not exist: put the folderset dataset there" in out.output
