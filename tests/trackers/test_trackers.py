"""Loggers read the record stream: what TensorBoard, W&B (offline) and MLflow hold equals
history.jsonl, a resumed run continues the same tracker runs without a duplicated step, a broken
or slow logger never fails or holds up training, and `mmbench sync` replays records idempotently."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from _readers import open_mlflow_run, tensorboard_scalars, wandb_offline_runs

from mmbench.benchmark import store
from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.identity import identity_hash
from mmbench.benchmark.trainer import Interrupted, train_run
from mmbench.trackers import backends, live
from mmbench.trackers.replay import STATE, scalars

from conftest import TINY, invoke

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning:mlflow.*", "ignore:The ``noload`` loader strategy"
)

SETS = [x for s in TINY for x in ("--set", s)]
RUN = "sustained_boost-epochs2_limit_train_per_class20"


def _history(seed_dir: Path) -> list[dict]:
    return store.read_history(seed_dir / store.HISTORY)


def _expected(history) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for line in history:
        for k, v in scalars(line).items():
            out.setdefault(k, {})[line["epoch"]] = v
    return out


def _close(a: float, b: float, rel: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-7)


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch):
    """No API key and no mode set: the W&B logger must choose offline by itself."""
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """The main job (sustained_boost on mfeat, tiny settings), trained once with all four loggers."""
    root = tmp_path_factory.mktemp("tracked") / "results"
    mp = pytest.MonkeyPatch()
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR", "MLFLOW_TRACKING_URI"):
        mp.delenv(var, raising=False)
    res = invoke(
        "run",
        "-m",
        "sustained_boost",
        "-d",
        "mfeat",
        *SETS,
        "--results",
        str(root),
        "--no-progress",
        "--logger",
        "tensorboard",
        "--logger",
        "wandb",
        "--logger",
        "mlflow",
        "--logger",
        "csv",
    )
    mp.undo()
    assert res.exit_code == 0, res.output
    seed_dir = root / "mfeat" / RUN / "seed-0"
    return root, seed_dir, json.loads((seed_dir / STATE).read_text())


@pytest.mark.slow
def test_tensorboard_event_files_hold_every_history_scalar_once(tracked):
    root, seed_dir, state = tracked
    history = _history(seed_dir)
    expected = _expected(history)
    assert {"train/loss", "test/fusion/acc", "val/fourier/f1", "diagnostics/classifiers/fourier"} <= set(
        expected
    )
    logdir = root / state["tensorboard"]["logdir"]
    assert logdir == root / "_tensorboard" / "mfeat" / RUN / "seed-0"
    got, texts = tensorboard_scalars(logdir)
    assert set(got) == set(expected)
    for key, by_epoch in expected.items():
        steps = [s for s, _ in got[key]]
        assert steps == sorted(by_epoch), (key, steps)  # each epoch once
        for step, value in got[key]:
            assert _close(value, by_epoch[step], rel=1e-6), (
                key,
                step,
                value,
                by_epoch[step],
            )  # float32 in TB
    config = json.loads((seed_dir / store.CONFIG).read_text())
    run_text = texts["run/text_summary"][0].tensor_proto.string_val[0].decode()
    assert config["identity"]["hash"] in run_text and "sustained_boost" in run_text


@pytest.mark.slow
def test_wandb_offline_run_holds_every_history_scalar_with_the_runs_identity(tracked):
    root, seed_dir, state = tracked
    expected = _expected(_history(seed_dir))
    (run,) = wandb_offline_runs(root / "_wandb", state["wandb"]["run_id"])
    steps = run["steps"]
    assert [s for s, _ in steps] == [0, 1]
    for step, values in steps:
        logged = {k: v for k, v in values.items()}
        assert set(logged) == {k for k, by in expected.items() if step in by}
        for k, v in logged.items():
            assert _close(v, expected[k][step], rel=1e-12), (k, step)
    config = json.loads((seed_dir / store.CONFIG).read_text())
    h = config["identity"]["hash"]
    assert run["run"]["config"]["identity_hash"] == h and run["run"]["config"]["seed"] == 0
    assert run["run"]["config"]["method"] == "sustained_boost" and run["run"]["config"]["dataset"] == "mfeat"
    assert run["run"]["group"] == f"mfeat/{RUN}/{h}"
    assert f"cfg-{h}" in run["run"]["tags"]


@pytest.mark.slow
def test_mlflow_client_reads_back_every_history_scalar_and_the_identity_tags(tracked):
    from mlflow import MlflowClient

    root, seed_dir, state = tracked
    expected = _expected(_history(seed_dir))
    assert state["mlflow"]["tracking_uri"] == f"sqlite:///{root.resolve()}/mlflow.db"
    client = MlflowClient(tracking_uri=state["mlflow"]["tracking_uri"])
    run = client.get_run(state["mlflow"]["run_id"])
    assert run.info.status == "FINISHED"
    config = json.loads((seed_dir / store.CONFIG).read_text())
    assert run.data.tags["mmbench.identity_hash"] == config["identity"]["hash"]
    assert run.data.tags["mmbench.seed"] == "0" and run.data.tags["mmbench.method"] == "sustained_boost"
    assert run.data.params["train.epochs"] == "2"
    for key, by_epoch in expected.items():
        hist = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in hist) == sorted(by_epoch), key
        for m in hist:
            assert _close(m.value, by_epoch[m.step], rel=1e-12), (key, m.step)
    record = json.loads((seed_dir / store.RESULT).read_text())
    sel = record["selection"]["val"]
    assert _close(run.data.metrics["selected/val/test/fusion/acc"], sel["test"]["fusion"]["acc"])


@pytest.mark.slow
def test_csv_logger_writes_the_history_as_one_row_per_epoch(tracked):
    import csv

    _, seed_dir, _ = tracked
    expected = _expected(_history(seed_dir))
    rows = list(csv.DictReader((seed_dir / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    for row in rows:
        for k, by_epoch in expected.items():
            assert float(row[k]) == by_epoch[int(row["epoch"])]


def test_loggers_change_neither_the_identity_nor_the_run_folder():
    plain = resolve_config("mfeat", "joint", {"epochs": 2})
    logged = resolve_config("mfeat", "joint", {"epochs": 2, "train.loggers": ["tensorboard", "csv"]})
    assert (
        identity_hash(plain) == identity_hash(logged) and plain.run_name == logged.run_name == "joint-epochs2"
    )


def test_an_unknown_logger_or_a_missing_package_is_refused_in_one_line(results, monkeypatch):
    res = invoke(
        "run",
        "-m",
        "joint",
        "-d",
        "mfeat",
        *SETS,
        "--set",
        "train.loggers=[bogus]",
        "--results",
        str(results),
    )
    assert res.exit_code == 2 and "unknown logger 'bogus'" in res.output
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    res = invoke("run", "-m", "joint", "-d", "mfeat", *SETS, "--logger", "wandb", "--results", str(results))
    assert res.exit_code == 2
    assert "error: the wandb logger needs the wandb package" in res.output and "pip install" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not results.exists()


@pytest.mark.slow
def test_resumed_run_continues_the_same_tracker_runs_without_a_duplicated_step(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    cfg = resolve_config(
        "mfeat",
        "joint",
        {"epochs": 3, "data.limit_train_per_class": 20, "train.loggers": ["tensorboard", "wandb", "mlflow"]},
    )
    root = tmp_path / "results"
    with pytest.raises(Interrupted):
        train_run(cfg, root, progress=False, stop_after_epochs=1, echo=lambda *_: None)
    seed_dir = store.run_dir(root, "mfeat", cfg.run_name, 0)
    first = json.loads((seed_dir / STATE).read_text())
    assert {n: first[n]["epochs"] for n in first} == {"tensorboard": 1, "wandb": 1, "mlflow": 1}
    assert (
        MlflowClient(first["mlflow"]["tracking_uri"]).get_run(first["mlflow"]["run_id"]).info.status
        == "KILLED"
    )
    train_run(cfg, root, progress=False, echo=lambda *_: None)
    state = json.loads((seed_dir / STATE).read_text())
    for name in ("tensorboard", "wandb", "mlflow"):
        assert state[name]["epochs"] == 3
        assert {k: v for k, v in state[name].items() if k not in ("epochs", "digest")} == {
            k: v for k, v in first[name].items() if k not in ("epochs", "digest")
        }, name
    expected = _expected(_history(seed_dir))

    tb, _ = tensorboard_scalars(root / state["tensorboard"]["logdir"])
    assert len(list((root / state["tensorboard"]["logdir"]).glob("events.out.tfevents.*"))) == 2
    for key in expected:
        assert [s for s, _ in tb[key]] == [0, 1, 2], key

    runs = wandb_offline_runs(root / "_wandb", state["wandb"]["run_id"])
    assert [[s for s, _ in r["steps"]] for r in runs] == [[0], [1, 2]]  # one offline folder per call, one id

    client = MlflowClient(state["mlflow"]["tracking_uri"])
    assert client.get_run(state["mlflow"]["run_id"]).info.status == "FINISHED"
    for key, by_epoch in expected.items():
        hist = client.get_metric_history(state["mlflow"]["run_id"], key)
        assert sorted(m.step for m in hist) == [0, 1, 2], key
        assert all(_close(m.value, by_epoch[m.step], rel=1e-12) for m in hist)


def _tiny(tmp_path, loggers, method="joint"):
    cfg = resolve_config(
        "mfeat", method, {"epochs": 2, "data.limit_train_per_class": 20, "train.loggers": loggers}
    )
    return cfg, tmp_path / "results"


@pytest.mark.slow
def test_a_failing_logger_warns_once_and_the_run_and_other_loggers_finish(tmp_path, capfd):
    cfg, root = _tiny(tmp_path, ["tensorboard", "csv"])
    root.mkdir(parents=True)
    (root / "_tensorboard").write_text("a file where TensorBoard's folder should be")  # cannot write there
    result = train_run(cfg, root, progress=False, echo=lambda *_: None)
    assert result["status"] == "finished"
    err = capfd.readouterr().err
    assert err.count("the tensorboard logger failed") == 1 and "Not a directory" in err
    assert "mmbench sync --logger tensorboard" in err
    seed_dir = store.run_dir(root, "mfeat", cfg.run_name, 0)
    state = json.loads((seed_dir / STATE).read_text())
    assert "tensorboard" not in state and state["csv"]["epochs"] == 2
    # the same record trained without any logger: identical numbers
    plain = train_run(
        _tiny(tmp_path / "plain", [])[0], tmp_path / "plain", progress=False, echo=lambda *_: None
    )
    assert plain["selection"] == result["selection"]


@pytest.mark.slow
def test_an_unreachable_mlflow_server_never_fails_the_run(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    cfg, root = _tiny(tmp_path, ["mlflow"])
    assert train_run(cfg, root, progress=False, echo=lambda *_: None)["status"] == "finished"
    assert capfd.readouterr().err.count("the mlflow logger failed") == 1


@pytest.mark.slow
def test_a_hanging_tracker_server_does_not_hold_up_training(tmp_path, monkeypatch, capfd):
    """An MLflow server that accepts the connection and never answers: both epochs train, the
    trainer waits for the logger at most CLOSE_TIMEOUT_S and says so."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # the kernel completes the handshakes; nobody ever reads or answers
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setattr(live, "CLOSE_TIMEOUT_S", 0.5)
    cfg, root = _tiny(tmp_path, ["mlflow"])
    t0 = time.time()
    try:
        result = train_run(cfg, root, progress=False, echo=lambda *_: None)
        elapsed = time.time() - t0
    finally:
        server.close()  # the logger's request fails now; it reports that and exits
    assert result["status"] == "finished" and elapsed < 100  # not held for the 120 s request
    assert "did not finish within 0.5 s" in capfd.readouterr().err


@pytest.mark.slow
def test_sync_replays_a_record_trained_without_loggers_once(results):
    res = invoke("run", "-m", "joint", "-d", "mfeat", *SETS, "--results", str(results), "--no-progress")
    assert res.exit_code == 0, res.output
    seed_dir = results / "mfeat" / "joint-epochs2_limit_train_per_class20" / "seed-0"
    assert not (seed_dir / STATE).exists()
    res = invoke("sync", "--logger", "tensorboard", "--logger", "csv", "--results", str(results))
    assert res.exit_code == 0 and "1 got 4 new steps" in res.output, res.output
    state = json.loads((seed_dir / STATE).read_text())
    logdir = results / state["tensorboard"]["logdir"]
    tb, _ = tensorboard_scalars(logdir)
    expected = _expected(_history(seed_dir))
    assert all([s for s, _ in tb[k]] == [0, 1] for k in expected)
    files = sorted(logdir.iterdir())
    res = invoke("sync", "--logger", "tensorboard", "--logger", "csv", "--results", str(results))
    assert res.exit_code == 0 and "0 got 0 new steps, 1 already up to date" in res.output, res.output
    assert sorted(logdir.iterdir()) == files  # nothing opened, nothing written


@pytest.mark.slow
def test_a_suite_sets_train_loggers_for_its_runs(tmp_path):
    suite = tmp_path / "tracked.toml"
    suite.write_text(
        '[suite]\nseeds = 1\ndatasets = ["mfeat"]\nmethods = ["joint"]\n'
        'set = { epochs = 2, "data.limit_train_per_class" = 20, "train.loggers" = ["csv"] }\n'
    )
    res = invoke("sweep", str(suite), "--results", str(tmp_path / "results"))
    assert res.exit_code == 0, res.output
    seed_dir = tmp_path / "results" / "mfeat" / "joint-epochs2_limit_train_per_class20" / "seed-0"
    assert (seed_dir / "metrics.csv").is_file()
    assert json.loads((seed_dir / STATE).read_text())["csv"]["epochs"] == 2


@pytest.mark.slow
def test_a_rerun_record_gets_a_new_tracker_run_and_leaves_the_old_one(results):
    args = (
        "run",
        "-m",
        "joint",
        "-d",
        "mfeat",
        *SETS,
        "--results",
        str(results),
        "--no-progress",
        "--logger",
        "tensorboard",
    )
    assert invoke(*args).exit_code == 0
    seed_dir = results / "mfeat" / "joint-epochs2_limit_train_per_class20" / "seed-0"
    first = json.loads((seed_dir / STATE).read_text())["tensorboard"]
    assert invoke(*args, "--rerun").exit_code == 0
    second = json.loads((seed_dir / STATE).read_text())["tensorboard"]
    assert first["logdir"].endswith("seed-0") and second["logdir"].endswith("seed-0~2")
    assert first["digest"] != second["digest"]  # the history was replaced (its epoch times differ)
    for state in (first, second):
        tb, _ = tensorboard_scalars(results / state["logdir"])
        assert [s for s, _ in tb["test/fusion/acc"]] == [0, 1]


@pytest.mark.slow
def test_two_workers_opening_a_new_mlflow_store_at_once_both_get_their_run(tmp_path):
    """Pool workers start their runs together: without the lock on the new SQLite store both
    processes run its table migrations and one fails ("duplicate column name: step", seen in a
    2-worker `mmbench run`, and in 2 of 2 tries of this test without the lock)."""
    import multiprocessing as mp

    from mlflow import MlflowClient

    root = tmp_path / "results"
    ctx = mp.get_context("spawn")
    answers = ctx.Queue()
    procs = [ctx.Process(target=open_mlflow_run, args=(str(root), seed, answers)) for seed in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    got = sorted(answers.get(timeout=5) for _ in procs)
    assert [g[:2] for g in got] == [("ok", 0), ("ok", 1)], got
    client = MlflowClient(backends.MlflowTracker.default_uri(root))
    runs = [client.get_run(run_id) for _, _, run_id in got]
    assert [r.data.tags["mmbench.seed"] for r in runs] == ["0", "1"]
    assert len({r.info.experiment_id for r in runs}) == 1
