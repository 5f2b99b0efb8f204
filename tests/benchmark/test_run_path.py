"""issue 12, the run path: run identity in records, drift refused, config.json once + run log,
train.threads, the per-seed lock, settings range checks, failed-seed exit codes, bad media mid
training, per-epoch lines off a terminal, group-readable files, dataset names registered once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmbench.benchmark import registry, store
from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.launch import run_local
from mmbench.benchmark.runstate import seed_lock, seed_status
from mmbench.benchmark.trainer import Interrupted, train_run, training_seconds

from conftest import TINY, invoke

SETS = sum((["--set", s] for s in TINY), [])
OVR = {"epochs": 2, "data.limit_train_per_class": 20}
QUIET = {"progress": False, "echo": lambda *_: None}


def _seed_dir(results, run="joint-t", seed=0, dataset="mfeat") -> Path:
    return store.run_dir(results, dataset, run, seed)


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    """One finished joint seed under --tag t (2 epochs)."""
    results = tmp_path_factory.mktemp("tagged") / "results"
    out = invoke("run", "-m", "joint", "-d", "mfeat", "--tag", "t", "--results", str(results), *SETS)
    assert out.exit_code == 0, out.output
    return results, out


# --------------------------------------------------------------------------- identity and drift
def test_record_carries_identity_components_heads_and_reference_flag(tagged):
    results, _ = tagged
    rec = store.read_json(_seed_dir(results) / store.RESULT)
    cfg = store.read_json(_seed_dir(results) / store.CONFIG)
    assert rec["identity"]["hash"] == cfg["identity"]["hash"]
    assert rec["identity"]["components"]["method"] == {"name": "joint", "version": "1", "origin": "builtin"}
    assert rec["identity"]["components"]["dataset"]["name"] == "mfeat"
    assert set(rec["heads"]) == {"fusion", "image", "fourier"} and "concat" in rec["heads"]["fusion"]
    assert rec["unimodal_reference"] is False and rec["modalities"] == ["image", "fourier"]
    assert rec["reproducible"]["bitwise"] is True and rec["config"]["train"]["threads"] == 1


def test_a_unimodal_run_says_which_modality_it_is_a_reference_for(tmp_path):
    cfg = resolve_config("mfeat", "unimodal", {**OVR, "epochs": 1, "method.modality": "fourier"})
    rec = train_run(cfg, tmp_path, **QUIET)
    assert rec["unimodal_reference"] is True and rec["reference_modality"] == "fourier"
    assert set(rec["heads"]) == {"fusion", "fourier"}


def test_every_builtin_method_declares_what_each_head_means():
    for name in registry.builtin_method_names():
        cls = registry.get_method(name)
        dataset = (getattr(cls, "conformance_datasets", None) or ("mfeat",))[0]  # greedy: cremad
        spec = registry.get_dataset(dataset)
        cfg = resolve_config(dataset, name, getattr(cls, "conformance_overrides", {}))
        dims = {m: f[1] for m, f in spec.backbones(cfg.data).items()}
        method = cls(cls.make_hyper(cfg.method_params), spec.modalities, spec.num_classes, dims)
        heads = method.head_meanings()
        assert set(heads) == {"fusion", *method.active_modalities}, name
        assert all(isinstance(v, str) and v for v in heads.values()), name
        assert (method.reference_modality() is not None) == (name == "unimodal"), name


def test_config_drift_under_one_tag_is_refused_naming_the_keys_and_writes_nothing(tagged):
    results, _ = tagged
    d = _seed_dir(results)
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    sets = [s.replace("epochs=2", "epochs=3") for s in SETS]
    out = invoke("run", "-m", "joint", "-d", "mfeat", "--tag", "t", "--results", str(results), *sets)
    assert out.exit_code == 2
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and "train.epochs" in lines[0] and str(d) in lines[0]
    assert "--rerun" in lines[0] and "--tag" in lines[0]
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()} == before


def test_a_changed_method_version_is_drift_too(tagged, monkeypatch):
    results, _ = tagged
    monkeypatch.setattr(registry.get_method("joint"), "version", "2", raising=False)
    cfg = resolve_config("mfeat", "joint", OVR, tag="t")
    state = seed_status(_seed_dir(results), cfg)
    assert state.status == "drift" and state.differing == ["components.method.version"]


def test_the_same_config_is_skipped_and_speed_settings_do_not_count_as_drift(tagged):
    results, _ = tagged
    out = invoke("run", "-m", "joint", "-d", "mfeat", "--tag", "t", "--results", str(results), *SETS,
                 "--set", "data.num_workers=0", "--set", "eval_batch_size=64")
    assert out.exit_code == 0 and "skipped, already finished" in out.output


@pytest.mark.parametrize("name", [store.RESULT, store.CONFIG])
def test_an_unreadable_record_is_named_with_what_to_do(tmp_path, name):
    results = tmp_path / "r"
    run_local("mfeat", "joint", [0], {**OVR, "epochs": 1}, results, tag="t", **QUIET)
    path = _seed_dir(results) / name
    path.write_text("{not json")
    out = invoke("run", "-m", "joint", "-d", "mfeat", "--tag", "t", "--results", str(results), "--set", "epochs=1",
                 "--set", "data.limit_train_per_class=20")
    assert out.exit_code == 2 and str(path) in out.output and "--rerun" in out.output
    assert "Traceback" not in out.output and path.read_text() == "{not json"


# --------------------------------------------------------------------------- provenance
def test_config_json_is_written_once_and_each_start_appends_to_the_run_log(tmp_path):
    cfg = resolve_config("mfeat", "joint", OVR)
    with pytest.raises(Interrupted):
        train_run(cfg, tmp_path, stop_after_epochs=1, **QUIET)
    d = _seed_dir(tmp_path, "joint-epochs2_limit_train_per_class20")
    config = (d / store.CONFIG).read_bytes()
    rec = train_run(cfg, tmp_path, **QUIET)
    assert (d / store.CONFIG).read_bytes() == config
    log = [json.loads(line) for line in (d / store.RUNLOG).read_text().splitlines()]
    assert [e["event"] for e in log] == ["start", "resume"] and [e["start_epoch"] for e in log] == [0, 1]
    for e in log:
        assert e["time"] and e["host"] and e["device"] == "cpu" and e["torch_threads"] == 1
        assert torch.__version__.startswith(e["packages"]["torch"]) and "git_sha" in e and "git_dirty" in e
    assert rec["seconds"] == training_seconds(store.read_history(d / store.HISTORY))  # the whole run
    assert rec["seconds"] >= rec["seconds_this_call"] - 1.0


def test_without_a_terminal_each_epoch_prints_one_line(tagged):
    _, out = tagged  # click's runner: stdout is not a tty
    lines = [ln for ln in out.output.splitlines() if ln.startswith("seed 0 epoch")]
    assert len(lines) == 2 and lines[0].startswith("seed 0 epoch 1/2: loss ")
    assert "val acc" in lines[0] and lines[0].endswith("s")


# --------------------------------------------------------------------------- threads
def test_the_same_config_gives_identical_metrics_with_1_or_2_threads_and_across_a_resume(tmp_path):
    """Without train.threads applied, these two differ (CPU reductions depend on the count)."""
    cfg = resolve_config("mfeat", "joint", OVR)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = train_run(cfg, tmp_path / "two", **QUIET)
        torch.set_num_threads(1)
        with pytest.raises(Interrupted):
            train_run(cfg, tmp_path / "resumed", stop_after_epochs=1, **QUIET)
        torch.set_num_threads(2)
        resumed = train_run(cfg, tmp_path / "resumed", **QUIET)
    finally:
        torch.set_num_threads(before)
    assert two["selection"] == resumed["selection"]
    assert torch.get_num_threads() == before  # train_run restores the caller's count


def test_threads_are_part_of_the_identity():
    a = resolve_config("mfeat", "joint", OVR)
    b = resolve_config("mfeat", "joint", {**OVR, "train.threads": 2})
    from mmbench.benchmark.identity import differing_keys, identity_config

    assert differing_keys(identity_config(a), identity_config(b)) == ["train.threads"]
    assert b.tag.endswith("threads2")


# --------------------------------------------------------------------------- lock
def test_a_seed_being_trained_elsewhere_is_skipped_and_said_so(tmp_path):
    lines = []
    d = _seed_dir(tmp_path, "joint-epochs2_limit_train_per_class20")
    with seed_lock(d):
        (outcome,) = run_local("mfeat", "joint", [0], OVR, tmp_path, progress=False, echo=lines.append)
    assert outcome.status == "busy" and not (d / store.RESULT).exists()
    assert any("being trained by another process" in ln for ln in lines)


HOLD_LOCK = """
import sys, time
from mmbench.benchmark.runstate import seed_lock
with seed_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_a_seed_locked_by_another_process_is_trained_once(tmp_path):
    """A second process holds the seed (as a running ``train_run`` does): this run skips it,
    writes nothing; once that process ends, the seed trains."""
    d = _seed_dir(tmp_path, "joint-epochs2_limit_train_per_class20")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(d)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        lines = []
        (busy,) = run_local("mfeat", "joint", [0], OVR, tmp_path, progress=False, echo=lines.append)
    finally:
        holder.communicate("\n", timeout=30)
    assert busy.status == "busy" and not (d / store.RESULT).exists() and not (d / store.RUNLOG).exists()
    assert any("being trained by another process" in ln for ln in lines)
    (done,) = run_local("mfeat", "joint", [0], OVR, tmp_path, **QUIET)
    assert done.status == "finished" and len((d / store.RUNLOG).read_text().splitlines()) == 1


# --------------------------------------------------------------------------- settings
@pytest.mark.parametrize(
    "setting, key",
    [
        ("epochs=0", "train.epochs"),
        ("batch_size=0", "train.batch_size"),
        ("eval_batch_size=0", "train.eval_batch_size"),
        ("lr=0", "train.lr"),
        ("lr=nan", "train.lr"),
        ("momentum=1.5", "train.momentum"),
        ("train.threads=0", "train.threads"),
        ("data.val_fraction=1.0", "data.val_fraction"),
        ("step_size=0", "train.step_size"),
    ],
)
def test_each_bad_setting_is_refused_before_a_record_exists(tmp_path, setting, key):
    out = invoke("run", "-m", "joint", "-d", "mfeat", "--results", str(tmp_path / "r"), "--set", setting)
    assert out.exit_code == 2
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0]
    assert not (tmp_path / "r").exists()


def test_a_method_window_that_starts_after_the_last_epoch_is_refused(tmp_path):
    out = invoke("run", "-m", "ogm_ge", "-d", "mfeat", "--results", str(tmp_path / "r"), "--set", "epochs=2",
                 "--set", "method.modulation_starts=5")
    assert out.exit_code == 2 and "method.modulation_starts" in out.output and not (tmp_path / "r").exists()
    out = invoke("run", "-m", "ogm_ge", "-d", "mfeat", "--results", str(tmp_path / "r"), "--set", "epochs=2",
                 "--set", "method.modulation_starts=1", "--set", "method.modulation_ends=0")
    assert out.exit_code == 2 and "method.modulation_ends" in out.output


# --------------------------------------------------------------------------- files
def test_records_are_readable_by_the_group_under_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        store.write_json(tmp_path / "a.json", {"x": 1})
        store.write_history(tmp_path / "h.jsonl", [{"x": 1}])
    finally:
        os.umask(old)
    store.write_json(tmp_path / "b.json", {"x": 1})
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "h.jsonl").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o666 & ~old


def test_a_dataset_name_cannot_be_registered_twice():
    other = type("OtherSpec", (), {"name": "mfeat"})()
    with pytest.raises(ValueError, match="already registered"):
        registry.register_dataset(other)
    assert type(registry.get_dataset("mfeat")).__name__ == "MfeatSpec"


# --------------------------------------------------------------------------- bad media
def _corrupt_a_file_the_start_check_does_not_sample(root: Path, data_cfg) -> Path:
    """Overwrite one wav with garbage that ``spec.check`` (a sample of 20 clips per split, run
    before training) does not decode, so the damage is met mid-training."""
    spec = registry.get_dataset("cremad")
    for path in sorted((root / "AudioWAV").iterdir()):
        saved = path.read_bytes()
        path.write_bytes(b"not a wav file" * 8)
        if not any(str(path) in p.message for p in spec.check(root, data_cfg) if p.level == "error"):
            return path
        path.write_bytes(saved)
    raise AssertionError("every wav is in the start-of-run check's sample")


def test_a_damaged_wav_met_mid_training_in_a_loader_worker_fails_only_that_seed(tmp_path):
    from mmbench.datasets.fixtures import write_fixture

    root = write_fixture("cremad", tmp_path / "cremad")
    args = ["run", "-m", "joint", "-d", "cremad", "--root", str(root), "--results", str(tmp_path / "r"),
            "--set", "data.preset=smoke", "--set", "epochs=1", "--set", "data.num_workers=2", "--no-progress"]
    assert invoke(*args).exit_code == 0
    good = next((tmp_path / "r" / "cremad").glob("*/seed-0")) / store.RESULT
    before = good.read_bytes()
    bad = _corrupt_a_file_the_start_check_does_not_sample(root, resolve_config("cremad", "joint", {"data.preset": "smoke"}).data)
    out = invoke(*args, "--seeds", "2")
    assert out.exit_code == 1, out.output
    line = next(ln for ln in out.output.splitlines() if ln.startswith("seed 1: FAILED"))
    assert str(bad) in line and "mmbench data check --deep" in line and "Traceback" not in out.output
    rec = store.read_json(good.parent.parent / "seed-1" / store.RESULT)
    assert rec["status"] == "failed" and str(bad) in rec["error"] and "\n" not in rec["error"]
    assert good.read_bytes() == before


def test_undecodable_media_raise_one_error_naming_the_file(tmp_path):
    from mmbench.datasets.audio import load_precomputed, read_wav
    from mmbench.datasets.frames import open_rgb, read_frame
    from mmbench.datasets.image_text import load_image
    from mmbench.datasets.nvgesture import load_flow
    from mmbench.errors import MediaError

    readers = (("x.wav", read_wav), ("x.jpg", open_rgb), ("z.jpg", read_frame), ("x.png", read_frame),
               ("y.jpg", lambda p: load_image(p, None)),
               ("x.npy", load_flow), ("x.pkl", load_precomputed))
    for name, reader in readers:
        path = tmp_path / name
        path.write_bytes(b"\x00garbage" * 4)
        with pytest.raises(MediaError, match="data check --deep") as info:
            reader(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_sweep_refuses_a_bad_setting_before_anything_and_fails_on_failed_seeds_left_behind(tmp_path):
    out = invoke("sweep", "smoke", "--results", str(tmp_path / "r"), "--set", "epochs=0", "--dry-run")
    assert out.exit_code == 2 and "train.epochs" in out.output and not (tmp_path / "r").exists()
    bad = {**OVR, "lr": 1e20}  # a NaN loss
    (outcome,) = run_local("mfeat", "joint", [0], bad, tmp_path / "r", **QUIET)
    assert outcome.status == "failed"
    suite = tmp_path / "one.toml"
    suite.write_text('[suite]\nseeds = 1\ndatasets = ["mfeat"]\nmethods = ["joint"]\n'
                     'set = { epochs = 2, "data.limit_train_per_class" = 20, lr = 1e20 }\n')
    again = invoke("sweep", str(suite), "--results", str(tmp_path / "r"))
    assert again.exit_code == 1, again.output  # nothing to train, a failed seed remains
