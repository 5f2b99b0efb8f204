"""Suites and launchers: the local worker pool and the SLURM path through submitit's local executor."""

import os
import signal
import subprocess
import sys
import time

import pytest

from mmbench.benchmark import store
from mmbench.benchmark.suites import load_suite, suite_names

from conftest import invoke

TINY_SETS = ["--set", "epochs=1", "--set", "data.limit_train_per_class=10"]


def test_builtin_suites_parse_and_expand_unimodal_per_modality():
    assert {"smoke", "paper_table1", "paper_table2", "paper_table3", "ablations"} <= set(suite_names())
    t1 = load_suite("paper_table1")
    uni = [j for j in t1.jobs if j.method == "unimodal" and j.dataset == "cremad" and j.seed == 0]
    assert sorted(j.overrides_dict["method.modality"] for j in uni) == ["audio", "video"]
    assert {j.seed for j in t1.jobs} == set(range(5))
    abl = load_suite("ablations")
    assert len({j.tag for j in abl.jobs}) == 11 and all(j.method == "sustained_boost" for j in abl.jobs)
    fixed = next(j for j in abl.jobs if j.tag == "fixed-a1-v10")
    assert fixed.overrides_dict["method.fixed_classifiers"] == {"audio": 1, "video": 10}


def test_every_paper_suite_run_resolves_to_a_valid_config():
    from mmbench.benchmark.config import resolve_config

    for name in ("paper_table1", "paper_table2", "paper_table3", "ablations"):
        for job in load_suite(name, seeds_override=1).jobs:
            resolve_config(job.dataset, job.method, job.overrides_dict, seed=job.seed, tag=job.tag)


def test_smoke_suite_covers_every_registered_method():
    from mmbench.benchmark.registry import method_names

    smoke = load_suite("smoke")
    # "*" leaves out a method that refuses mfeat: greedy needs staged ResNet encoders
    assert {j.method for j in smoke.jobs} == set(method_names()) - {"greedy"}
    assert {j.seed for j in smoke.jobs} == {0, 1}


def test_unknown_suite_lists_the_builtin_ones():
    out = invoke("sweep", "nope")
    assert out.exit_code == 2 and "unknown suite 'nope'; built-in suites: " in out.output


def _suite_file(tmp_path, methods='["joint", "unimodal"]', seeds=2):
    path = tmp_path / "mini.toml"
    path.write_text(f'[suite]\nseeds = {seeds}\ndatasets = ["mfeat"]\nmethods = {methods}\n')
    return path


@pytest.mark.slow
def test_smoke_suite_with_two_workers_completes_and_a_rerun_does_nothing(tmp_path):
    from mmbench.benchmark.registry import method_names

    results = tmp_path / "results"
    # one seed of the suite's two (--seeds 1): every method still runs, in the 2-worker pool
    # epochs=2 (the suite's own): di_mml needs one epoch for each of its two stages
    tiny = ["--seeds", "1", "--set", "epochs=2", "--set", "data.limit_train_per_class=5"]
    runnable = set(method_names()) - {"greedy"}  # greedy needs staged ResNet encoders: n/a on mfeat
    n = (len(runnable) - 1) + 2  # every method x 1 seed; unimodal once per modality
    out = invoke("sweep", "smoke", "--jobs", "2", "--results", str(results), *tiny)
    assert out.exit_code == 0, out.output
    assert f"running {n} runs in 2 worker(s)" in out.output and f"sweep: {n} done, 0 skipped, 0 failed" in out.output
    records = store.load_results(results)
    assert len(records) == n and all(r["status"] == "finished" for r in records)
    assert {r["method"] for r in records} == runnable
    again = invoke("sweep", "smoke", "--jobs", "2", "--results", str(results), *tiny)
    assert f"nothing to run: all {n} runs already have records" in again.output
    assert f"sweep: 0 done, {n} skipped, 0 failed" in again.output


@pytest.mark.slow
def test_sweep_killed_midway_finishes_only_the_rest(tmp_path):
    suite = _suite_file(tmp_path, '["joint"]', seeds=4)
    results = tmp_path / "results"
    args = [sys.executable, "-m", "mmbench.cli", "sweep", str(suite), "--results", str(results),
            "--set", "epochs=2", "--set", "data.limit_train_per_class=10"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline and len(store.load_results(results)) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(store.load_results(results))
    if done == 4:
        pytest.skip("the sweep finished before it could be killed")
    out = invoke("sweep", str(suite), "--results", str(results), "--set", "epochs=2",
                 "--set", "data.limit_train_per_class=10")
    assert out.exit_code == 0, out.output
    assert f"sweep: {4 - done} done, {done} skipped, 0 failed" in out.output
    assert len(store.load_results(results)) == 4


@pytest.mark.slow
def test_slurm_launcher_runs_a_real_run_through_submitits_local_executor(tmp_path):
    pytest.importorskip("submitit")
    suite = _suite_file(tmp_path, '["joint"]', seeds=1)
    results = tmp_path / "results"
    out = invoke("sweep", str(suite), "--launcher", "slurm", "--cluster", "local", "--wait",
                 "--results", str(results), *TINY_SETS)
    assert out.exit_code == 0, out.output
    assert "submitted 1 tasks" in out.output and "sweep: 1 done" in out.output
    (rec,) = store.load_results(results)
    assert rec["status"] == "finished" and rec["method"] == "joint"


def test_slurm_task_requeues_itself_on_preemption():
    submitit = pytest.importorskip("submitit")
    from mmbench.benchmark.slurm import RunTask
    from mmbench.benchmark.suites import Job

    task = RunTask(Job("mfeat", "joint", 0), "/tmp/r")
    again = task.checkpoint()
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert again.function.job == task.job
