"""best.ckpt, the run identity in the record, and restoring a run's selected model from its record."""

import contextlib

import pytest
import torch

from mmbench.benchmark import store
from mmbench.benchmark.config import parse_overrides, resolve_config
from mmbench.benchmark.identity import differing_keys, identity_config, identity_hash
from mmbench.benchmark.loaders import EpochLoader
from mmbench.benchmark.restore import extract_features, load_selected
from mmbench.benchmark.trainer import Interrupted, evaluate, train_run
from mmbench.errors import MMBenchError

from conftest import TINY


def _cfg(extra=(), method="joint", seed=0):
    return resolve_config("mfeat", method, parse_overrides([*TINY, "epochs=4", *extra]), seed=seed)


def _run(tmp_path, cfg):
    result = train_run(cfg, tmp_path, progress=False)
    return result, store.run_dir(tmp_path, "mfeat", cfg.run_name, cfg.seed)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["joint", "sustained_boost"])
def test_restored_model_reproduces_the_selected_epochs_metrics(tmp_path, method):
    """The weights in best.ckpt give exactly the val and test metrics the record reports for the
    epoch each rule selected (sustained boosting: grown heads rebuilt from the method state)."""
    result, run = _run(tmp_path, _cfg(method=method))
    assert result["identity"]["hash"] == identity_hash(_cfg(method=method))
    assert result["schema_version"] == store.SCHEMA_VERSION
    for rule in ("val", "test-best"):
        sel = result["selection"][rule]
        assert result["checkpoints"][rule] == {"epoch": sel["epoch"], "file": store.BEST}
        restored = load_selected(run, rule)
        assert restored.epoch == sel["epoch"]
        test_set = restored.spec.build("test", restored.data_root, False, restored.cfg.data)
        loader = EpochLoader(test_set, restored.cfg.train.eval_batch_size, False)
        metrics = evaluate(restored.method, restored.model, loader, restored.device, contextlib.nullcontext)
        assert metrics == sel["test"]


@pytest.mark.slow
def test_best_checkpoint_survives_a_resume(tmp_path):
    cfg = _cfg(["step_size=2"])
    full, _ = _run(tmp_path / "full", cfg)
    with pytest.raises(Interrupted):
        train_run(cfg, tmp_path / "part", progress=False, stop_after_epochs=2)
    resumed, run = _run(tmp_path / "part", cfg)
    assert resumed["checkpoints"] == full["checkpoints"]
    a = load_selected(store.run_dir(tmp_path / "full", "mfeat", cfg.run_name, 0)).model.state_dict()
    b = load_selected(run).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_extract_features_gives_encoder_outputs_per_modality(tmp_path):
    _, run = _run(tmp_path, _cfg())
    restored = load_selected(run)
    out = extract_features(restored, "val")
    n = len(restored.spec.build("val", restored.data_root, False, restored.cfg.data))
    assert set(out["features"]) == set(restored.spec.modalities)
    assert all(f.shape == (n, restored.method.feature_dims[m]) for m, f in out["features"].items())
    assert out["labels"].shape == (n,)
    assert torch.equal(extract_features(restored, "val")["features"]["image"], out["features"]["image"])


def test_missing_best_checkpoint_is_one_clear_error(tmp_path):
    _, run = _run(tmp_path, _cfg())
    (run / store.BEST).unlink()
    with pytest.raises(MMBenchError, match="best.ckpt is missing"):
        load_selected(run)
    (run / store.BEST).write_bytes(b"garbage")
    with pytest.raises(MMBenchError, match="unreadable"):
        load_selected(run)


def test_identity_ignores_seed_and_speed_keys_and_names_what_differs():
    base = _cfg()
    assert identity_hash(base) == identity_hash(_cfg(seed=3))
    assert identity_hash(base) == identity_hash(_cfg(["data.num_workers=2", "train.compile=true"]))
    other = _cfg(["lr=0.5"])
    assert identity_hash(other) != identity_hash(base)
    assert differing_keys(identity_config(base), identity_config(other)) == ["train.lr"]
    comps = identity_config(base)["components"]
    assert comps["method"] == {"name": "joint", "version": "1", "origin": "builtin"}
    assert comps["dataset"]["origin"] == "builtin"
