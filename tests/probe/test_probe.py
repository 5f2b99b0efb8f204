"""Linear probes and imbalance scores of real mfeat runs (issue 15)."""

import json

import pytest
import torch

from mmbench.benchmark import store
from mmbench.benchmark.config import parse_overrides, resolve_config
from mmbench.benchmark.feature_predict import predict_from_features
from mmbench.benchmark.restore import extract_features, load_selected
from mmbench.benchmark.trainer import train_run
from mmbench.probe.recipe import DEFAULT_RECIPE, ProbeRecipe
from mmbench.probe.run import SPLITS, fit_all, probe_record, probe_run
from mmbench.probe.shapley import imbalance_degree, shapley_values

from conftest import TINY

FAST = ProbeRecipe(epochs=15)  # the default recipe's fields, fewer epochs (tests only)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Real runs on the embedded data (2 epochs, 20 train rows per class): joint, AGM (whose
    predict runs zeroed coalitions) and sustained boosting (grown heads)."""
    root = tmp_path_factory.mktemp("results")
    out = {}
    for method in ("joint", "agm", "sustained_boost"):
        cfg = resolve_config("mfeat", method, parse_overrides(TINY), seed=0)
        train_run(cfg, root, progress=False)
        out[method] = store.run_dir(root, "mfeat", cfg.run_name, 0)
    return out


def test_shapley_values_of_a_hand_computed_three_player_game():
    """v: {}=0, a=.3, b=.2, c=.1, ab=.6, ac=.4, bc=.3, abc=.8; by hand (weights 1/3, 1/6, 1/6, 1/3):
    phi_a = .1 + .4/6 + .3/6 + .5/3, phi_b = .2/3 + .3/6 + .2/6 + .4/3, phi_c = .1/3 + .1/6 + .1/6 + .2/3."""
    v = {"": 0, "a": 0.3, "b": 0.2, "c": 0.1, "ab": 0.6, "ac": 0.4, "bc": 0.3, "abc": 0.8}
    phi = shapley_values({frozenset(k): x for k, x in v.items()}, "abc")
    assert phi["a"] == pytest.approx(0.1 + 0.4 / 6 + 0.3 / 6 + 0.5 / 3)
    assert phi["b"] == pytest.approx(0.2 / 3 + 0.3 / 6 + 0.2 / 6 + 0.4 / 3)
    assert phi["c"] == pytest.approx(0.1 / 3 + 0.1 / 6 + 0.1 / 6 + 0.2 / 3)
    assert sum(phi.values()) == pytest.approx(v["abc"] - v[""])
    assert imbalance_degree({"a": 0.5, "b": 0.0}) == 1.0 and imbalance_degree({"a": 0.0, "b": 0.0}) is None


@pytest.mark.parametrize("method", ["joint", "agm", "sustained_boost"])
def test_shapley_contributions_sum_to_fused_minus_all_masked_on_real_runs(runs, method):
    """Efficiency on a real run, and the unmasked coalition is the harness's own fused test
    accuracy of the val-selected epoch (the method's predict on cached features)."""
    restored = load_selected(runs[method])
    probe = probe_record(restored, store.read_json(runs[method] / store.RESULT), FAST)
    sh = probe["imbalance"]["shapley"]
    assert sum(sh["values"].values()) == pytest.approx(sh["fused"] - sh["all_masked"], abs=1e-12)
    record = store.read_json(runs[method] / store.RESULT)
    assert sh["fused"] == pytest.approx(record["selection"]["val"]["test"]["fusion"]["acc"], abs=1e-12)
    assert set(sh["coalitions"]) == {"", "image", "fourier", "image+fourier"}


def test_feature_path_gives_the_harness_logits_of_every_joint_head(runs):
    restored = load_selected(runs["joint"])
    feats = extract_features(restored, "test")
    logits = predict_from_features(restored, feats["features"], feats["labels"], batch_size=70)
    record = store.read_json(runs["joint"] / store.RESULT)["selection"]["val"]["test"]
    from mmbench.benchmark.metrics import head_metrics

    got = head_metrics(logits, feats["labels"])
    assert set(got) == set(record)
    for head, metrics in record.items():
        assert got[head] == pytest.approx(metrics, abs=1e-12)


def test_probe_numbers_are_deterministic_for_a_seed_and_a_checkpoint(runs):
    a = probe_record(load_selected(runs["joint"]), {}, FAST)
    b = probe_record(load_selected(runs["joint"]), {}, FAST)
    assert a["probes"] == b["probes"] and a["imbalance"] == b["imbalance"]
    assert a["recipe_hash"] == FAST.hash() != DEFAULT_RECIPE.hash()
    other_seed = probe_record(load_selected(runs["joint"]), {}, ProbeRecipe(epochs=15, seed=1))
    assert other_seed["probes"] != a["probes"]  # the seed is used (batch order)


@pytest.mark.slow
def test_probe_on_random_encoders_scores_lower_than_on_trained_ones(tmp_path):
    """Same architecture, weights re-initialised: the mean test accuracy of the image, fourier
    and concat probes drops (real joint run, 8 epochs on 60 train rows per class; mfeat's inputs
    are good features already, so the gap is a few points: 2.3 on the acceptance runs)."""
    cfg = resolve_config("mfeat", "joint", parse_overrides(["epochs=8", "data.limit_train_per_class=60"]), seed=0)
    train_run(cfg, tmp_path, progress=False)
    restored = load_selected(store.run_dir(tmp_path, "mfeat", cfg.run_name, 0))
    trained = {s: extract_features(restored, s) for s in SPLITS}
    torch.manual_seed(123)
    for enc in restored.model.encoders.values():
        for module in enc.modules():
            if hasattr(module, "reset_parameters") and module is not enc:
                module.reset_parameters()
    random = {s: extract_features(restored, s) for s in SPLITS}

    def mean_acc(feats):
        probes = fit_all(feats, restored.spec.modalities, 10, DEFAULT_RECIPE)
        return sum(p["test"]["acc"] for p in probes.values()) / len(probes)

    assert mean_acc(trained) > mean_acc(random) + 0.01


def test_probe_run_writes_probe_json_resumes_and_never_touches_the_record(runs, tmp_path):
    run = runs["joint"]
    before = {name: (run / name).read_bytes() for name in (store.RESULT, store.CONFIG, store.HISTORY)}
    status, probe = probe_run(run, FAST)
    assert status == "probed" and json.loads((run / store.PROBE).read_text())["recipe_hash"] == FAST.hash()
    assert probe["run"]["epoch"] == store.read_json(run / store.RESULT)["checkpoints"]["val"]["epoch"]
    assert probe_run(run, FAST)[0] == "skipped"
    assert probe_run(run, FAST, rerun=True)[0] == "probed"
    assert probe_run(run, ProbeRecipe(epochs=14))[0] == "probed"  # another recipe is not current
    (run / store.PROBE).write_text("{not json")
    assert probe_run(run, FAST)[0] == "probed"  # a damaged probe.json is replaced
    assert {name: (run / name).read_bytes() for name in before} == before
    assert set(probe["probes"]) == {"image", "fourier", "concat"}
    assert probe["imbalance"]["probe_ratio"]["value"] >= 1.0
