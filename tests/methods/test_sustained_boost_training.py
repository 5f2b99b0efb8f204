"""sustained_boost on real data (mfeat): classifiers go to the weak fourier modality, resume
rebuilds added classifiers and their optimiser state, the ablation switches run from the CLI,
and the per-dataset settings cite their sources."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from click.testing import CliRunner

from mmbench.benchmark.config import method_preset, resolve_config
from mmbench.benchmark.trainer import Interrupted, train_run
from mmbench.cli import cli

SMALL = {"epochs": 4, "data.limit_train_per_class": 20}  # 4 epochs -> t_N = 1: a check every epoch


def _history(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run_dir(root, cfg):
    return root / cfg.dataset / cfg.run_name / f"seed-{cfg.seed}"


@pytest.mark.slow
def test_classifiers_are_added_to_the_weak_fourier_modality_on_mfeat(tmp_path):
    cfg = resolve_config("mfeat", "sustained_boost", SMALL, device="cpu")
    train_run(cfg, tmp_path, progress=False)
    hist = _history(_run_dir(tmp_path, cfg) / "history.jsonl")
    assert len(hist) == 4
    counts = [h["diagnostics"]["classifiers"] for h in hist]
    assert counts[0] == {"image": 1, "fourier": 1}  # additions apply from the next epoch on
    assert counts[-1]["fourier"] > 1 and counts[-1]["image"] == 1
    for prev, rec in itertools.pairwise(hist):
        # what one check decided is exactly what the next epoch trains with
        for m in ("image", "fourier"):
            added = prev["diagnostics"]["pending_additions"].count(m)
            assert rec["diagnostics"]["classifiers"][m] == prev["diagnostics"]["classifiers"][m] + added
    for rec in hist:
        d = rec["diagnostics"]
        assert d["confidence_ratio"] == pytest.approx(d["confidence"]["image"] / d["confidence"]["fourier"])
        assert 0 < d["weights"]["fourier"] < 1 and 0 < d["weights"]["image"] < 1
        assert set(d["running_ratio"]) == {"image", "fourier"}
        assert {"loss", "loss_image", "loss_fourier", "loss_w"} <= set(rec["train"])
    # the image modality is the stronger one: its epoch confidence sum is larger
    assert hist[0]["diagnostics"]["confidence"]["image"] > hist[0]["diagnostics"]["confidence"]["fourier"]
    assert hist[-1]["test"]["fusion"]["acc"] > 0.2  # twice chance after 4 epochs on 200 samples


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run_with_classifiers_added_before_the_stop(tmp_path):
    cfg = resolve_config("mfeat", "sustained_boost", SMALL, device="cpu")
    full = train_run(cfg, tmp_path / "full", progress=False)

    part_root = tmp_path / "part"
    with pytest.raises(Interrupted):
        train_run(cfg, part_root, progress=False, stop_after_epochs=2)
    ckpt = torch.load(_run_dir(part_root, cfg) / "last.ckpt", map_location="cpu", weights_only=False)
    state = ckpt["method"]
    assert state["counts"]["fourier"] > 1, "precondition: a classifier was added before the stop"
    assert state["additions"], "precondition: the checkpoint holds an applied addition"
    assert state["pending"], "precondition: an addition decided before the stop is applied after it"
    assert any(".added.fourier." in k for k in ckpt["model"])
    # the added L1s close the optimiser's base group, and they carry momentum state
    opt_state = ckpt["optimizers"]["optimizers"]["main"]
    base_ids = opt_state["param_groups"][0]["params"]
    for idx in base_ids[-2 * len(state["additions"]) :]:
        assert "momentum_buffer" in opt_state["state"][idx]

    resumed = train_run(cfg, part_root, progress=False)
    assert resumed["selection"] == full["selection"]
    h_full = _history(_run_dir(tmp_path / "full", cfg) / "history.jsonl")
    h_res = _history(_run_dir(part_root, cfg) / "history.jsonl")
    for a, b in zip(h_full, h_res):
        assert a["train"] == b["train"]
        assert a["test"] == b["test"]
        assert a["diagnostics"] == b["diagnostics"]
    end_full = torch.load(
        _run_dir(tmp_path / "full", cfg) / "last.ckpt", map_location="cpu", weights_only=False
    )
    end_res = torch.load(_run_dir(part_root, cfg) / "last.ckpt", map_location="cpu", weights_only=False)
    assert end_full["model"].keys() == end_res["model"].keys()
    for k in end_full["model"]:
        assert torch.equal(end_full["model"][k], end_res["model"][k]), k


@pytest.mark.slow
def test_untrained_added_layers_keep_their_initialisation_but_pass_gradients(tmp_path):
    cfg = resolve_config(
        "mfeat", "sustained_boost", {**SMALL, "epochs": 3, "method.train_added_layers": False}, device="cpu"
    )
    train_run(cfg, tmp_path, progress=False)
    ckpt = torch.load(_run_dir(tmp_path, cfg) / "last.ckpt", map_location="cpu", weights_only=False)
    added = [k for k in ckpt["model"] if ".added.fourier." in k and k.endswith("bias")]
    assert added, "precondition: fourier got classifiers"
    for k in added:
        assert torch.count_nonzero(ckpt["model"][k]) == 0  # zero-initialised bias never stepped
    n_params = len(ckpt["optimizers"]["optimizers"]["main"]["param_groups"][0]["params"])
    cfg_trained = resolve_config(
        "mfeat", "sustained_boost", {**SMALL, "epochs": 3, "method.train_added_layers": True}, device="cpu"
    )
    train_run(cfg_trained, tmp_path, progress=False)
    ckpt_t = torch.load(_run_dir(tmp_path, cfg_trained) / "last.ckpt", map_location="cpu", weights_only=False)
    assert len(ckpt_t["optimizers"]["optimizers"]["main"]["param_groups"][0]["params"]) > n_params


@pytest.mark.slow
@pytest.mark.parametrize(
    "sets, check",
    [
        (
            ['method.loss_terms=["residual","ensemble"]'],
            lambda d, p: p["loss_terms"] == ["residual", "ensemble"],
        ),
        (["method.weight_net=off"], lambda d, p: d["weights"] == {"image": 1.0, "fourier": 1.0}),
        (
            ["method.weight_net=fixed", "method.weight_value=0.25"],
            lambda d, p: d["weights"]["fourier"] == 0.25,
        ),
        (
            ["method.assignment=fixed", 'method.fixed_classifiers={"fourier": 3}'],
            lambda d, p: d["classifiers"] == {"image": 1, "fourier": 3} and not d["aca_check"],
        ),
        (
            [
                "method.residual_target=sum_probs",
                "method.aca_rule=difference",
                "method.zero_grad_mode=none",
                "method.aca_first_check=false",
            ],
            lambda d, p: p["aca_rule"] == "difference" and p["zero_grad_mode"] in ("none", None),
        ),
    ],
)
def test_ablation_switches_run_from_the_cli(tmp_path, sets, check):
    args = [
        "run",
        "-m",
        "sustained_boost",
        "-d",
        "mfeat",
        "--results",
        str(tmp_path),
        "--device",
        "cpu",
        "--no-progress",
        "--set",
        "epochs=2",
        "--set",
        "data.limit_train_per_class=10",
    ]
    for s in sets:
        args += ["--set", s]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    (run,) = list((tmp_path / "mfeat").iterdir())
    params = json.loads((run / "seed-0" / "config.json").read_text())["method_params"]
    hist = _history(run / "seed-0" / "history.jsonl")
    assert check(hist[-1]["diagnostics"], params)
    table = CliRunner().invoke(cli, ["table", "--results", str(tmp_path), "--metric", "acc"])
    assert table.exit_code == 0, table.output
    assert "sustained_boost" in table.output


@pytest.mark.parametrize(
    "value, message",
    [
        ('method.loss_terms=["residual","bogus"]', "unknown terms"),
        ("method.weight_net=maybe", "weight_net must be one of"),
        ('method.fixed_classifiers={"audio": 2}', "unknown modalities"),
        ('method.fusion_weights={"image": 1.0}', "fusion_weights must give a weight"),
    ],
)
def test_bad_switch_values_give_one_line_errors(tmp_path, value, message):
    res = CliRunner().invoke(
        cli, ["run", "-m", "sustained_boost", "-d", "mfeat", "--results", str(tmp_path), "--set", value]
    )
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output


def test_every_paper_setting_cites_its_source():
    preset = method_preset("sustained_boost")
    for dataset, values in preset["datasets"].items():
        sources = preset["sources"][dataset]
        assert set(values) <= set(sources), dataset
        for key, src in sources.items():
            assert src.startswith(("[code]", "[paper", "[guess]")), (dataset, key)
    for dataset, official in preset["official"].items():
        assert set(official["train"]) <= set(official["sources"]), dataset
    assert preset["datasets"]["cremad"]["fusion_weights"] == {"audio": 0.4, "video": 0.6}
    assert preset["datasets"]["nvgesture"]["rho_min"] == 0.4
    cfg = resolve_config("mfeat", "sustained_boost")
    assert cfg.method_params["fusion_weights"] == {"image": 0.5, "fourier": 0.5}
    assert cfg.sources["method.smoothing"].startswith("[guess]")


@pytest.mark.slow
def test_three_modalities_train_with_the_nvgesture_rules_on_mfeat3(tmp_path):
    # rho_min 0.5 instead of the NVGesture 0.4: on 100 rows the three ratios sit near 0.5
    sets = {"epochs": 2, "data.limit_train_per_class": 10, "method.rho_min": 0.5}
    cfg = resolve_config("mfeat3", "sustained_boost", sets, device="cpu")
    result = train_run(cfg, tmp_path, progress=False)
    assert result["status"] == "finished"
    hist = _history(_run_dir(tmp_path, cfg) / "history.jsonl")
    d = hist[-1]["diagnostics"]
    mods = ("image", "fourier", "morph")
    S = [d["confidence"][m] for m in mods]
    for m, s in zip(mods, S):
        assert d["confidence_ratio"][m] == pytest.approx(s / (sum(S) - s))
    # the check after epoch 0 adds a classifier to every modality below rho_min, and only those
    first = hist[0]["diagnostics"]
    S0 = [first["confidence"][m] for m in mods]
    weak = [m for m, s in zip(mods, S0) if s / (sum(S0) - s) < 0.5]
    assert weak, "precondition: some modality is below rho_min after epoch 0"
    assert first["pending_additions"] == weak
    assert d["classifiers"] == {m: 1 + (m in weak) for m in mods}
    assert {"loss_image", "loss_fourier", "loss_morph", "loss_w"} <= set(hist[-1]["train"])
    assert set(hist[-1]["test"]) == {"fusion", *mods}
