"""The local process pool on file-backed data, run identity on the reader side, and integrity on
read: the acceptance tests of issue 12 that concern sweeps and readers."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmbench.benchmark import store

from conftest import invoke

FIXTURE_SETS = ["--set", "epochs=1", "--set", "data.preset=smoke", "--set", "data.num_workers=2"]
MFEAT_SETS = ["--set", "epochs=1", "--set", "data.limit_train_per_class=10"]


def _fixture_suite(tmp_path):
    """CREMA-D and Kinetics-Sounds fixtures in their on-disk formats (``mmbench data fixture``),
    two methods each: four file-backed runs read by two DataLoader workers."""
    roots = {}
    for name in ("cremad", "kinetics_sounds"):
        out = invoke("data", "fixture", name, "--out", str(tmp_path / name))
        assert out.exit_code == 0, out.output
        roots[name] = tmp_path / name
    suite = tmp_path / "fixtures.toml"
    suite.write_text('[suite]\nseeds = 1\ndatasets = ["cremad", "kinetics_sounds"]\nmethods = ["joint", "ogm_ge"]\n')
    root_args = [a for name, path in roots.items() for a in ("--root", f"{name}={path}")]
    return suite, root_args


@pytest.mark.slow
def test_fixture_sweep_with_two_jobs_and_loader_workers_finishes_and_a_killed_one_trains_only_the_rest(tmp_path):
    suite, root_args = _fixture_suite(tmp_path)
    results = tmp_path / "results"
    args = [sys.executable, "-m", "mmbench.cli", "sweep", str(suite), "--jobs", "2", "--results", str(results),
            *root_args, *FIXTURE_SETS]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not store.load_results(results) and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(store.load_results(results))
    assert 0 < done <= 4, "no run of the fixture sweep finished in 240 s"
    out = invoke("sweep", str(suite), "--jobs", "2", "--results", str(results), *root_args, *FIXTURE_SETS)
    assert out.exit_code == 0, out.output
    assert f"sweep: {4 - done} done, {done} skipped, 0 failed" in out.output
    records = store.load_results(results)
    assert len(records) == 4 and all(r["status"] == "finished" for r in records)
    assert {(r["dataset"], r["method"]) for r in records} == {
        (d, m) for d in ("cremad", "kinetics_sounds") for m in ("joint", "ogm_ge")}
    for rec in records:  # the loaders really ran with workers (not silently 0)
        cfg = json.loads((Path(rec["path"]) / store.CONFIG).read_text())
        assert cfg["data"]["num_workers"] == 2


@pytest.mark.slow
def test_run_with_two_jobs_gives_the_metrics_of_a_sequential_run(tmp_path):
    args = ["run", "-m", "joint", "-d", "mfeat", "--seeds", "2", *MFEAT_SETS]
    seq = invoke(*args, "--jobs", "1", "--results", str(tmp_path / "seq"))
    par = invoke(*args, "--jobs", "2", "--results", str(tmp_path / "par"))
    assert seq.exit_code == 0 and par.exit_code == 0, seq.output + par.output
    assert "training 2 seeds in 2 worker processes" in par.output
    assert sum(line.startswith("seed ") for line in par.output.splitlines()) == 2  # one line per seed
    by_seed = {}
    for name in ("seq", "par"):
        for rec in store.load_results(tmp_path / name):
            by_seed.setdefault(rec["seed"], []).append((rec["selection"], rec["identity"]["hash"]))
    assert sorted(by_seed) == [0, 1]
    for (sel_a, hash_a), (sel_b, hash_b) in by_seed.values():
        assert sel_a == sel_b and hash_a == hash_b


def test_config_drift_under_one_tag_is_refused_with_the_differing_keys(tmp_path):
    results = str(tmp_path / "results")
    base = ["run", "-m", "joint", "-d", "mfeat", "--tag", "t", "--set", "data.limit_train_per_class=10",
            "--results", results]
    assert invoke(*base, "--set", "epochs=1").exit_code == 0
    path = tmp_path / "results" / "mfeat" / "joint-t" / "seed-0" / store.RESULT
    before = path.read_bytes()
    out = invoke(*base, "--set", "epochs=2")
    assert out.exit_code == 2
    assert "joint-t/seed-0 holds a run of another config (differing: train.epochs)" in out.output
    assert "--rerun" in out.output and "--tag" in out.output and "Traceback" not in out.output
    assert path.read_bytes() == before  # nothing written
    # a sweep reaching the same folder refuses the same way; --dry-run lists it
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nseeds = 1\ndatasets = ["mfeat"]\nmethods = ["joint"]\n\n'
                     '[[runs]]\ntag = "t"\nset = { epochs = 2, "data.limit_train_per_class" = 10 }\n')
    dry = invoke("sweep", str(suite), "--dry-run", "--results", results)
    assert dry.exit_code == 1 and "drift   mfeat/joint-t seed 0" in dry.output and "differing: train.epochs" in dry.output
    swept = invoke("sweep", str(suite), "--results", results)
    assert swept.exit_code == 2 and "differing: train.epochs" in swept.output and path.read_bytes() == before
    again = invoke(*base, "--set", "epochs=2", "--rerun")
    assert again.exit_code == 0 and json.loads(path.read_text())["epochs"] == 2
    # a new seed under the same tag with the old config: the table shows two flagged rows
    assert invoke(*base, "--set", "epochs=1", "--seed-start", "1").exit_code == 0
    table = invoke("table", "--results", results, "--metric", "acc")
    rows = [line for line in table.output.splitlines() if line.startswith("| joint-t [cfg ")]
    assert len(rows) == 2 and all(" | 1 | " in r or " | 1/2 | " in r for r in rows)
    assert "mfeat/joint-t holds seeds of 2 configs" in table.output and "differing keys: train.epochs" in table.output


def _corrupt_two_seeds(tmp_path):
    results = tmp_path / "results"
    out = invoke("run", "-m", "joint", "-d", "mfeat", "--seeds", "3", "--jobs", "1", "--results", str(results),
                 *MFEAT_SETS)
    assert out.exit_code == 0, out.output
    run = results / "mfeat" / "joint-epochs1_limit_train_per_class10"
    (run / "seed-1" / store.RESULT).write_text('{"dataset": "mfeat", "sta')  # truncated write
    hist = run / "seed-2" / store.HISTORY
    hist.write_text(hist.read_text() + "{not json\n")
    return results, run


def test_a_corrupt_record_is_named_by_every_reader_and_lost_by_none(tmp_path):
    results, run = _corrupt_two_seeds(tmp_path)
    bad = str(run / "seed-1" / store.RESULT)
    kept = (run / "seed-1" / store.RESULT).read_bytes()
    # run and sweep refuse before training anything: one line naming the file and what to do
    rerun = invoke("run", "-m", "joint", "-d", "mfeat", "--seeds", "3", "--results", str(results), *MFEAT_SETS)
    assert rerun.exit_code == 2 and bad in rerun.output and "unreadable" in rerun.output
    assert len(rerun.output.strip().splitlines()) == 1 and "Traceback" not in rerun.output
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nseeds = 3\ndatasets = ["mfeat"]\nmethods = ["joint"]\n'
                     'set = { epochs = 1, "data.limit_train_per_class" = 10 }\n')
    for extra, code in ((["--dry-run"], 1), ([], 2)):
        swept = invoke("sweep", str(suite), "--results", str(results), *extra)
        assert swept.exit_code == code and bad in swept.output and "Traceback" not in swept.output
    md = invoke("table", "--results", str(results), "--metric", "acc")
    assert md.exit_code == 0 and f"unreadable {bad}: not valid JSON" in md.output
    assert "| joint-epochs1_limit_train_per_class10 | 2 |" in md.output  # the two readable seeds, the third listed, not hidden
    report = tmp_path / "r.html"
    rep = invoke("report", "--results", str(results), "--out", str(report), "--jobs", "1")
    assert rep.exit_code == 0, rep.output
    html = report.read_text()
    assert bad in html and str(run / "seed-2" / store.HISTORY) in html and "line " in html
    assert (run / "seed-1" / store.RESULT).read_bytes() == kept  # no reader changed it


def test_scan_results_lists_unreadable_and_partial_seeds(tmp_path):
    from reporting_fixtures import write_run

    write_run(tmp_path, "mfeat", "joint", 0, {"fusion": 0.9})
    (tmp_path / "mfeat" / "joint" / "seed-1").mkdir()
    (tmp_path / "mfeat" / "joint" / "seed-1" / store.RESULT).write_bytes(b"\xff\xfe garbage")
    (tmp_path / "mfeat" / "joint" / "seed-2").mkdir()
    (tmp_path / "mfeat" / "joint" / "seed-2" / store.CHECKPOINT).write_bytes(b"x")
    (tmp_path / "mfeat" / "joint" / "seed-3").mkdir()
    (tmp_path / "mfeat" / "joint" / "seed-3" / store.RESULT).write_text('{"dataset": "mfeat"}')
    scan = store.scan_results(tmp_path)
    assert [r["seed"] for r in scan.records] == [0]
    assert [(p.kind, p.path.split("/")[-2] if p.kind == "unreadable" else p.path.split("/")[-1]) for p in scan.problems] == [
        ("unreadable", "seed-1"), ("partial", "seed-2"), ("unreadable", "seed-3")]
    assert "field method: missing (+2 more)" in scan.problems[2].message  # record_schema names the field
    assert store.scan_results(tmp_path, datasets=["other"]).problems == []


def test_a_table_over_mixed_config_seeds_never_averages_them(tmp_path):
    from reporting_fixtures import write_run

    from mmbench.reporting.aggregate import build_tables, render_table

    for seed in range(2):
        write_run(tmp_path, "mfeat", "joint", seed, {"fusion": 0.90, "image": 0.7}, identity="a")
    write_run(tmp_path, "mfeat", "joint", 2, {"fusion": 0.50, "image": 0.4}, identity="b")
    for seed, epochs in ((0, 2), (1, 2), (2, 3)):  # the configs the three seeds were trained with
        cfg = {"dataset": "mfeat", "method": "joint", "seed": seed, "train": {"epochs": epochs}, "data": {}}
        store.write_json(tmp_path / "mfeat" / "joint" / f"seed-{seed}" / store.CONFIG, cfg)
    records = store.load_results(tmp_path)
    ctx = build_tables(records, "table1", ["acc"])
    rows = {r["run"]: r["groups"][0]["n"] for r in ctx["rows"]}
    assert len(rows) == 2 and sorted(rows.values()) == [1, 2]
    assert all(name.startswith("joint [cfg ") for name in rows)
    means = sorted(c["mean"] for (k, c) in _fusion_cells(ctx))
    assert means[0] < 60 < 85 < means[1]  # 0.50 alone; 0.90 +- offsets: never the 0.77 average
    (note,) = [c for c in ctx["caveats"] if "holds seeds of 2 configs" in c]
    assert "differing keys: train.epochs" in note
    assert "holds seeds of 2 configs" in render_table(records, "md")


def _fusion_cells(ctx):
    for row in ctx["rows"]:
        yield row["run"], row["groups"][0]["cells"][0]


def test_old_records_still_table_flagged_and_method_facts_come_from_the_records(tmp_path):
    from reporting_fixtures import write_run

    from mmbench.reporting.aggregate import build_tables

    write_run(tmp_path, "mfeat", "zeta", 0, {"fusion": 0.9, "image": 0.8})  # a plugin no registry knows
    write_run(tmp_path, "mfeat", "joint", 0, {"fusion": 0.8, "image": 0.7}, schema=1)
    write_run(tmp_path, "mfeat", "alpha", 0, {"fusion": 0.7, "image": 0.7}, tag="image")
    rec_path = tmp_path / "mfeat" / "alpha-image" / "seed-0" / store.RESULT
    rec = json.loads(rec_path.read_text())
    rec["unimodal_reference"] = True  # a reference under another name: first row, not ranked in fusion
    store.write_json(rec_path, rec)
    ctx = build_tables(store.load_results(tmp_path), "table1", ["acc"])
    assert [r["run"] for r in ctx["rows"]] == ["alpha-image", "joint", "zeta"]
    assert ctx["rows"][0]["groups"][0]["cells"][0]["rank"] is None
    assert {n["method"]: n["text"] for n in ctx["notes"]}["zeta"] == "the modality's own head"
    (old,) = [c for c in ctx["caveats"] if "old records" in c]
    assert "mfeat/joint" in old


@pytest.mark.parametrize("damage", ["{truncated", '["a list"]', ""])
def test_safe_readers_never_raise(tmp_path, damage):
    path = tmp_path / "seed-0" / store.RESULT
    path.parent.mkdir()
    path.write_text(damage)
    rec, problem = store.read_record(path.parent)
    assert rec is None and problem.kind == "unreadable" and str(path) in problem.line()
    cfg, problem = store.read_json_checked(path)
    assert cfg is None and problem is not None
