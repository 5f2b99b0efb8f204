"""mmbench tune: plan, spaces, folds, trial records, the Optuna ledger, bad input, estimators."""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mmbench.cli import cli

SMOKE = ["--set", "data.preset=smoke"]
REPO = Path(__file__).resolve().parents[2]


def tune(*args):
    return CliRunner().invoke(cli, ["tune", *args], catch_exceptions=False)


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


# ----------------------------------------------------------------------------- plan (T1)
def _study(method, trials=5, sampler="random", seed=0):
    from mmbench.tuning import space
    from mmbench.tuning.study import build_study

    dims = space.load_space("mfeat", method)
    base = space.validate(dims, "mfeat", method, {"data.preset": "smoke"})
    return build_study(
        "t", "mfeat", method, {"data.preset": "smoke"}, dims, base, sampler, seed, 3, 1, "acc", trials
    )


def test_plan_is_a_pure_function_shared_dims_match_and_growing_keeps_indices():
    a, b = _study("joint"), _study("joint")
    assert a.plan == b.plan and len(a.plan) == 6
    o = _study("ogm_ge")
    for i in range(6):
        assert o.plan[i]["train.lr"] == a.plan[i]["train.lr"]
        assert o.plan[i]["train.weight_decay"] == a.plan[i]["train.weight_decay"]
    longer = _study("ogm_ge", trials=9)
    assert longer.plan[:6] == o.plan
    assert _study("joint", seed=1).plan[1:] != a.plan[1:]
    # the anchor is the resolved default
    assert o.plan[0] == {"train.lr": 0.01, "train.weight_decay": 1e-4, "method.alpha": 0.1}
    # every planned value lies in its dimension
    for d in o.dims:
        assert all(d.contains(row[d.key]) for row in longer.plan)
    sob = _study("ogm_ge", sampler="sobol")
    assert sob.plan == _study("ogm_ge", sampler="sobol").plan and sob.plan[0] == o.plan[0]


def test_plan_does_not_depend_on_worker_order():
    from mmbench.tuning.plan import trial_params

    st = _study("ogm_ge", trials=6)
    shuffled = {i: trial_params(st.dims, "random", 0, i, st.anchor) for i in (5, 2, 6, 0, 1, 4, 3)}
    assert [shuffled[i] for i in range(7)] == st.plan


def test_grid_covers_the_grid_once():
    from mmbench.tuning import space
    from mmbench.tuning.plan import grid_order

    dims = [d for d in space.load_space("mfeat", "sustained_boost") if d.kind == "categorical"]
    order = grid_order(dims, 0)
    assert sorted(r["method.smoothing"] for r in order) == [0.1, 0.2, 0.33, 0.5, 1.0]


# ----------------------------------------------------------------------------- spaces (T2)
def test_mfeat_spaces_validate_and_show_their_sources():
    from mmbench.tuning import space

    for m in ("joint", "ogm_ge", "pmr", "agm", "mmpareto", "reconboost", "gblend", "mslr", "sustained_boost"):
        dims = space.load_space("mfeat", m)
        space.validate(dims, "mfeat", m, {})
        assert all(d.source.startswith(("[paper]", "[code]", "[guess]")) for d in dims)
        assert sum(d.group == 1 for d in dims) <= 2
    r = tune("--show-space", "-m", "ogm_ge", "-d", "mfeat")
    assert r.exit_code == 0 and '"method.alpha" = { low = 0.05, high = 2.0, log = true }' in r.output
    assert "configs/methods/ogm_ge.toml [search]" in r.output


@pytest.mark.slow
def test_every_builtin_space_validates_on_every_dataset_it_has_settings_for():
    from mmbench.benchmark.config import method_preset
    from mmbench.benchmark.registry import builtin_method_names, get_dataset
    from mmbench.tuning import space

    for m in sorted(builtin_method_names()):
        pre = method_preset(m)
        for d in (
            "mfeat",
            "mfeat3",
            "cremad",
            "kinetics_sounds",
            "vggsound",
            "nvgesture",
            "twitter15",
            "sarcasm",
        ):
            if pre and d not in pre.get("datasets", {}):
                continue
            fixed = {"method.modality": get_dataset(d).modalities[0]} if m == "unimodal" else {}
            space.validate(space.load_space(d, m), d, m, fixed)


@pytest.mark.parametrize(
    "body, message",
    [
        ('"train.nope" = { low = 0.1, high = 1.0, source = "[guess] x" }', "unknown key train.nope"),
        ('"train.lr" = { low = 0.1, high = 0.01, source = "[guess] x" }', "low 0.1 >= high 0.01"),
        ('"train.lr" = { low = 0.0, high = 0.1, log = true, source = "[guess] x" }', "log-scaled but low"),
        ('"train.lr" = { low = 0.001, high = 0.1, source = "a guess" }', "needs a source"),
        (
            '"train.lr" = { low = 0.02, high = 0.1, source = "[guess] x" }',
            "does not contain the resolved default",
        ),
        ('"train.lr" = { choices = [], source = "[guess] x" }', "empty choices"),
        (
            '"method.modulation_starts" = { low = 0, high = 40, int = true, source = "[guess] x" }',
            "refused by the harness",
        ),
        ('"train.epochs" = { low = 1.5, high = 4, int = true, source = "[guess] x" }', "non-integer bound"),
    ],
)
def test_bad_space_is_one_line_exit_2_nothing_written(tmp_path, body, message):
    f = tmp_path / "space.toml"
    f.write_text("[search]\n" + body + "\n")
    results = tmp_path / "results"
    r = CliRunner().invoke(
        cli,
        [
            "tune",
            "-m",
            "ogm_ge",
            "-d",
            "mfeat",
            "--space",
            str(f),
            "--results",
            str(results),
            "--trials",
            "1",
            *SMOKE,
            "--dry-run",
        ],
    )
    assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert listing(results) == []


# ----------------------------------------------------------------------------- folds (T3)
def test_folds_partition_the_pool_stratified_and_keep_test_rows():
    from mmbench.benchmark.config import resolve_config
    from mmbench.benchmark.folds import fold_splits
    from mmbench.benchmark.registry import get_dataset
    from mmbench.datasets.mfeat import mfeat_splits, read_view

    spec = get_dataset("mfeat")
    cfg = resolve_config("mfeat", "joint", {"data.cv_folds": 3}).data
    std = mfeat_splits(0)
    pool = sorted(std["train"] + std["val"])
    _, labels = read_view("pix")
    vals = []
    for seed in (1000, 1001, 1002):
        s = fold_splits(spec, None, cfg, seed)
        assert s["test"] == std["test"]
        assert sorted(s["train"] + s["val"]) == pool and not set(s["train"]) & set(s["val"])
        vals.append(s["val"])
        counts = np.bincount(labels[s["val"]], minlength=10)
        assert counts.max() - counts.min() <= 1
    assert sorted(itertools.chain(*vals)) == pool  # each pool item validates exactly once
    assert fold_splits(spec, None, cfg, 1003) == fold_splits(spec, None, cfg, 1000)  # fold = seed mod K
    # the train limit applies to the fold's train part, after the pool is taken
    small = resolve_config("mfeat", "joint", {"data.cv_folds": 3, "data.preset": "smoke"}).data
    s = fold_splits(spec, None, small, 1000)
    assert np.bincount(labels[s["train"]], minlength=10).tolist() == [20] * 10
    assert s["val"] == vals[0] and s["test"] == std["test"]


def test_folds_above_the_smallest_class_are_refused(tmp_path):
    results = tmp_path / "r"
    r = tune("-m", "joint", "-d", "mfeat", "--folds", "171", "--results", str(results))
    assert r.exit_code == 2 and "has 170 items of class 0 in train∪val: at most --folds 170" in r.output
    assert listing(results) == []


def test_cv_folds_enters_the_identity_only_when_set_and_known_hashes_hold():
    from mmbench.benchmark.config import resolve_config
    from mmbench.benchmark.identity import identity_hash

    # hashes of existing configs, computed before data.cv_folds / eval_test / keep_checkpoints existed
    assert identity_hash(resolve_config("mfeat", "joint", {})) == "8e3364450f0f6bfa"
    assert identity_hash(resolve_config("mfeat", "ogm_ge", {"data.preset": "smoke"})) == "ca28b3f99eced390"
    base = resolve_config("mfeat", "joint", {})
    assert identity_hash(
        resolve_config("mfeat", "joint", {"train.eval_test": False, "train.keep_checkpoints": False})
    ) == identity_hash(base)
    assert identity_hash(resolve_config("mfeat", "joint", {"data.cv_folds": 3})) != identity_hash(base)


def test_bad_cv_folds_and_official_protocol_are_refused():
    from mmbench.benchmark.config import resolve_config
    from mmbench.errors import ConfigError

    with pytest.raises(ConfigError, match="data.cv_folds must be 0"):
        resolve_config("mfeat", "joint", {"data.cv_folds": 1})
    r = tune("-m", "ogm_ge", "-d", "mfeat", "--set", "protocol=official", "--dry-run")
    assert r.exit_code == 2 and "protocol=official has none" in r.output


# ----------------------------------------------------------------------------- end to end (T4, T5, T10)
@pytest.mark.slow
def test_tune_final_table_and_ledger_end_to_end(tmp_path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    results = tmp_path / "results"
    args = [
        "-m",
        "joint",
        "-d",
        "mfeat",
        "--trials",
        "2",
        "--folds",
        "2",
        "--study",
        "e2e",
        "--results",
        str(results),
        *SMOKE,
    ]
    r = tune(*args)
    assert r.exit_code == 0, r.output
    doc = json.loads((results / "_tune/e2e/mfeat/joint/study.json").read_text())
    storage = JournalStorage(JournalFileBackend(str(results / "_tune/optuna.journal")))
    study = optuna.load_study(study_name="e2e:mfeat:joint", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    for t in study.trials:
        assert t.params == pytest.approx(doc["plan"][t.number])
        recs = [json.loads((Path(p) / "result.json").read_text()) for p in t.user_attrs["runs"]]
        assert t.value == math.fsum(r["selection"]["val"]["val"]["fusion"]["acc"] for r in recs) / 2
        for rec in recs:  # trial runs hold no test numbers and keep no checkpoints
            assert rec["test_evaluated"] is False and rec["selection"]["val"]["test"] is None
            assert "test-best" not in rec["selection"]
        for p in t.user_attrs["runs"]:
            assert not (Path(p) / "last.ckpt").exists() and not (Path(p) / "best.ckpt").exists()
            hist = [json.loads(line) for line in (Path(p) / "history.jsonl").read_text().splitlines()]
            assert all(h["test"] is None for h in hist)
    cfg = json.loads((Path(study.trials[0].user_attrs["runs"][0]) / "config.json").read_text())
    assert cfg["splits"]["cv"] == {"folds": 2, "fold": 0, "pool": 1700} and cfg["splits"]["test"] == 300
    # the objective never reads test: rewriting test numbers changes nothing
    from mmbench.tuning.runner import record_value

    rec = json.loads((Path(study.trials[1].user_attrs["runs"][0]) / "result.json").read_text())
    before = record_value(rec, "acc")
    rec["selection"]["val"]["test"] = {"fusion": {"acc": 1.0}}
    assert record_value(rec, "acc") == before
    # a rerun trains nothing and tells nothing new
    r = tune(*args)
    assert r.exit_code == 0 and "0 trials told" in r.output
    # rebuilt from records into a fresh journal: same params, values and states
    from mmbench.tuning.commands import rebuild
    from mmbench.tuning.study import parse_storage

    spec2 = parse_storage(str(tmp_path / "rebuilt.journal"), results, 1)
    from mmbench.tuning.commands import Request, resolve_studies

    studies = resolve_studies(
        Request(["joint"], ["mfeat"], None, 2, 2, label="e2e", fixed={"data.preset": "smoke"}), results
    )
    assert rebuild(studies, spec2, results) == ["e2e:mfeat:joint: rebuilt 3 trials from the run records"]
    again = optuna.load_study(study_name="e2e:mfeat:joint", storage=spec2.open())
    assert [(t.params, t.value, t.state) for t in again.trials] == [
        (t.params, t.value, t.state) for t in study.trials
    ]
    # tables hide the trial runs unless asked
    from mmbench.benchmark.store import load_results

    assert load_results(results) == []
    assert len(load_results(results, include_tuning=True)) == 6
    # final runs, the tuning block, the default-vs-tuned table
    r = tune(*args, "--final", "--seeds", "2")
    assert r.exit_code == 0, r.output
    assert "mmbench run -m joint -d mfeat --seeds 2 --tag tuned-e2e" in r.output
    fin = json.loads((results / "mfeat/joint-tuned-e2e/seed-1/result.json").read_text())
    assert fin["tuning"]["study"] == "e2e:mfeat:joint" and fin["tuning"]["trials"] == 2
    assert fin["tuning"]["params"] == doc["plan"][fin["tuning"]["best_trial"]]
    assert fin["test_evaluated"] is True
    CliRunner().invoke(
        cli, ["run", "-m", "joint", "-d", "mfeat", "--seeds", "2", "--results", str(results), *SMOKE]
    )
    t = CliRunner().invoke(cli, ["table", "--tuned", "e2e", "--results", str(results)])
    assert t.exit_code == 0 and "(tuned, 2 trials × 2 folds)" in t.output and "paired" in t.output, t.output
    assert "no pruning" in t.output and "2-fold CV on train ∪ val" in t.output
    # the curve figure and its data
    f = CliRunner().invoke(
        cli, ["figure", "tuning", "--study", "e2e", "--results", str(results), "--out", str(tmp_path / "fig")]
    )
    assert f.exit_code == 0 and (tmp_path / "fig/tuning_mfeat_e2e.png").is_file()
    data = json.loads((tmp_path / "fig/figure-data-e2e.json").read_text())["mfeat"][0]
    assert data["trials"] == 2 and data["anchor"] == study.trials[0].value


def test_final_before_the_budget_is_spent_and_a_changed_spec_are_refused(tmp_path):
    from mmbench.tuning.commands import Request, prepare, resolve_studies

    results = tmp_path / "results"
    req = Request(["joint"], ["mfeat"], None, 2, 2, label="x", fixed={"data.preset": "smoke"})
    prepare(resolve_studies(req, results), results, None, 1, "symlink")
    before = listing(results)
    r = tune(
        "-m",
        "joint",
        "-d",
        "mfeat",
        "--trials",
        "2",
        "--folds",
        "2",
        "--study",
        "x",
        "--results",
        str(results),
        *SMOKE,
        "--final",
    )
    assert r.exit_code == 2 and "no trial has completed yet (3 of 3 trials not finished)" in r.output
    r = tune(
        "-m",
        "joint",
        "-d",
        "mfeat",
        "--trials",
        "2",
        "--folds",
        "3",
        "--study",
        "x",
        "--results",
        str(results),
        *SMOKE,
    )
    assert r.exit_code == 2 and "differs in folds" in r.output and "--study NEW" in r.output
    assert listing(results) == before


# ----------------------------------------------------------------------------- bad input (T7)
@pytest.mark.parametrize(
    "extra, message",
    [
        (["-m", "nope", "-d", "mfeat"], "unknown method"),
        (["-m", "joint", "-d", "nope"], "unknown dataset"),
        (["nosuchsuite"], "unknown suite"),
        (
            ["-m", "joint", "-d", "mfeat", "--storage", "sqlite:///x.db", "--jobs", "2"],
            "SQLite cannot serve parallel",
        ),
        (["-m", "joint", "-d", "mfeat", "--storage", "redis://u:secret@h/0"], "unknown scheme"),
        (
            ["-m", "joint", "-d", "mfeat", "--storage", "postgresql://nobody:secret@127.0.0.1:1/x"],
            "cannot open the tuning storage 'postgresql://nobody:***@127.0.0.1:1/x'",
        ),
        (["-m", "joint", "-d", "mfeat", "--set", "data.cv_folds=3"], "tuner's own setting"),
        (["-m", "joint", "-d", "mfeat", "--set", "train.lr=0.05"], "both searched and fixed"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, extra, message):
    results = tmp_path / "results"
    r = tune(*extra, "--results", str(results), "--trials", "2", *SMOKE)
    assert r.exit_code == 2 and message in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and "secret" not in r.output
    assert listing(results) == []


def test_optuna_missing_is_one_line(monkeypatch, tmp_path):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "optuna":
            raise ImportError("no optuna")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    r = tune("-m", "joint", "-d", "mfeat", "--trials", "1", "--results", str(tmp_path / "r"), *SMOKE)
    assert r.exit_code == 2 and "mmbench tune needs optuna: pip install -e '.[tune]'" in r.output


def test_damaged_journal_is_one_line(tmp_path):
    results = tmp_path / "results"
    (results / "_tune").mkdir(parents=True)
    (results / "_tune/optuna.journal").write_text("{not json\n")
    r = tune("-m", "joint", "-d", "mfeat", "--trials", "1", "--results", str(results), *SMOKE)
    assert r.exit_code == 2 and "is damaged" in r.output and "--rebuild-ledger" in r.output


def test_dry_run_writes_nothing(tmp_path):
    results = tmp_path / "results"
    r = tune(
        "-m", "joint", "-m", "ogm_ge", "-d", "mfeat", "--trials", "3", "--results", str(results), "--dry-run"
    )
    assert r.exit_code == 0 and "trial 0 (anchor): train.lr=0.01" in r.output
    assert "total: 2 studies, 24 runs" in r.output and listing(results) == []


# ----------------------------------------------------------------------------- divergence (T6)
@pytest.mark.slow
def test_a_diverging_trial_fails_counts_and_skips_its_other_folds(tmp_path):
    import optuna

    f = tmp_path / "space.toml"
    f.write_text('[search]\n"train.lr" = { choices = [0.01, 1e6], source = "[guess] test" }\n')
    results = tmp_path / "results"
    r = tune(
        "-m",
        "joint",
        "-d",
        "mfeat",
        "--space",
        str(f),
        "--sampler",
        "grid",
        "--trials",
        "2",
        "--folds",
        "2",
        "--study",
        "div",
        "--results",
        str(results),
        *SMOKE,
        "--set",
        "train.momentum=0.0",
    )
    assert r.exit_code == 0, r.output
    from mmbench.tuning.study import parse_storage

    study = optuna.load_study(study_name="div:mfeat:joint", storage=parse_storage(None, results, 1).open())
    states = {t.params["train.lr"]: t for t in study.trials}
    assert states[1e6].state.name == "FAIL" and states[1e6].user_attrs["reason"].startswith("non-finite")
    assert len(states[1e6].user_attrs["runs"]) == 1  # the second fold was not trained
    assert states[0.01].state.name == "COMPLETE"


# ----------------------------------------------------------------------------- estimators (T8)
def test_expected_max_estimators_equal_brute_force():
    from mmbench.tuning.curves import band, expected_max_dodge, expected_max_unbiased

    rng = np.random.default_rng(0)
    for n_total in (1, 3, 5):
        v = rng.integers(0, 4, n_total).astype(float)  # ties
        dodge, unb = expected_max_dodge(v), expected_max_unbiased(v)
        for n in range(1, n_total + 1):
            brute = np.mean([max(t) for t in itertools.product(v, repeat=n)])
            assert dodge[n - 1] == pytest.approx(brute)
            sub = np.mean([max(c) for c in itertools.combinations(v, n)])
            assert unb[n - 1] == pytest.approx(sub)
        assert dodge[0] == pytest.approx(v.mean()) and np.all(np.diff(dodge) >= -1e-12)
    v = rng.random(8)
    lo, hi = band(v, seed=3)
    curve = expected_max_dodge(v)
    assert np.all(lo <= curve + 1e-12) and np.all(curve <= hi + 1e-12)
    assert np.array_equal(band(v, seed=3)[0], lo)


def test_edge_warning_names_the_edge():
    from mmbench.tuning.runner import edge_warnings

    st = _study("ogm_ge")
    assert edge_warnings(st, {"train.lr": 0.098, "train.weight_decay": 1e-4, "method.alpha": 0.1}) == [
        "best lr = 0.098 at the upper edge of log [0.001, 0.1]"
    ]


# ----------------------------------------------------------------------------- kill, resume, workers (T11, T12)
def _cmd(results, label, *extra):
    return [
        sys.executable,
        "-c",
        "from mmbench.cli import cli; cli()",
        "tune",
        "-m",
        "joint",
        "-d",
        "mfeat",
        "--trials",
        "3",
        "--folds",
        "2",
        "--study",
        label,
        "--results",
        str(results),
        *SMOKE,
        *extra,
    ]


def _values(results, label):
    import optuna

    from mmbench.tuning.study import parse_storage

    study = optuna.load_study(
        study_name=f"{label}:mfeat:joint", storage=parse_storage(None, results, 1).open()
    )
    return [(t.number, t.state.name, t.value) for t in study.trials]


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_kill_9_mid_study_then_resume_gives_the_uninterrupted_values(tmp_path):
    ref = tmp_path / "ref"
    subprocess.run(_cmd(ref, "k"), check=True, env=_env(), capture_output=True)
    results = tmp_path / "killed"
    proc = subprocess.Popen(
        _cmd(results, "k"), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    target = results / "mfeat/joint-tune-k-t0001/seed-1001/history.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (target.is_file() and target.read_text().strip()):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    out = subprocess.run(_cmd(results, "k"), check=True, env=_env(), capture_output=True, text=True).stdout
    assert "resuming k:mfeat:joint" in out
    assert _values(results, "k") == _values(ref, "k")
    log = [
        json.loads(x)
        for x in (results / "mfeat/joint-tune-k-t0001/seed-1001/runlog.jsonl").read_text().splitlines()
    ]
    assert [e["event"] for e in log].count("resume") <= 1


@pytest.mark.slow
def test_two_concurrent_workers_never_train_one_trial_twice(tmp_path):
    ref = tmp_path / "ref"
    subprocess.run(_cmd(ref, "w"), check=True, env=_env(), capture_output=True)
    results = tmp_path / "two"
    procs = [
        subprocess.Popen(_cmd(results, "w"), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    assert [p.wait() for p in procs] == [0, 0]
    assert _values(results, "w") == _values(ref, "w")
    for log in results.glob("mfeat/*/seed-*/runlog.jsonl"):
        events = [json.loads(x)["event"] for x in log.read_text().splitlines()]
        assert events == ["start"], (log, events)


# ----------------------------------------------------------------------------- overflow (T9)
def test_an_ask_beyond_the_plan_is_an_ignored_overflow_trial(tmp_path):
    import optuna

    from mmbench.tuning.runner import OVERFLOW, _claim, study_state
    from mmbench.tuning.study import open_optuna_study

    st = _study("joint", trials=1)
    study = open_optuna_study(st, optuna.storages.InMemoryStorage(), optuna)
    first = [study.ask(fixed_distributions=st.distributions()) for _ in range(2)]  # plan indices 0 and 1
    assert [t.params for t in first] == [pytest.approx(row) for row in st.plan]
    real = study.get_trials
    calls = []

    def stale(*a, **k):  # the last-trial race: this worker saw the plan before the other worker's ask
        calls.append(1)
        return [] if len(calls) == 1 else real(*a, **k)

    study.get_trials = stale
    assert _claim(st, study, None, tmp_path, optuna, set()) is None
    study.get_trials = real
    over = study.trials[2]
    assert over.state.name == "FAIL" and over.user_attrs[OVERFLOW] is True
    state = study_state(st, study, tmp_path, optuna)
    assert state.overflow == 1 and not state.failed and state.not_started == 0
