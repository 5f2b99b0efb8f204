"""G-Blend (specs/methods/gblend.md): every numeric case of §8, the held-out slice, the blended
step, the online schedule, three modalities, the variants, resume and the CLI on real mfeat."""

from __future__ import annotations

import contextlib
import copy
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from _method_runs import assert_resume_matches
from click.testing import CliRunner

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.trainer import train_run
from mmbench.cli import cli
from mmbench.errors import ConfigError
from mmbench.methods.gblend import GBlend, GBlendHyper, aggregate_losses, blend_weights

ATOL = 1e-6
# spec §8, branches (audio, visual, mm): (T0, V0, T1, V1)
PAPER = torch.tensor([[2.0, 2.1, 1.0, 1.6], [2.0, 2.05, 1.4, 1.5], [2.0, 2.1, 0.8, 1.4]], dtype=torch.float64)


def _tiny(dataset="mfeat", **sets):
    over = {"epochs": 3, "data.limit_train_per_class": 20, "method.super_epoch": 2}
    over.update(sets)
    return resolve_config(dataset, "gblend", over, seed=0, device="cpu")


def _close(a, b):
    return torch.allclose(
        torch.as_tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64), atol=ATOL
    )


# ----------------------------------------------------------------------------- §8 numbers
def test_paper_form_weights_match_spec_case():
    res = blend_weights(*PAPER.T)
    assert _close(res["gain"], [0.5, 0.55, 0.7])
    assert _close(res["overfit"], [0.5, 0.05, 0.5])
    assert _close(res["raw"], [2.0, 220.0, 2.8])
    assert _close(res["w"], [0.008897, 0.978648, 0.012456])
    assert _close(res["ogr"], [1.0, 0.090909, 0.714286])


def test_batch_sum_aggregation_reproduces_balancebenchmark_weights():
    # the same per-batch means in every batch: 100 training batches, 20 held-out batches
    cols = []
    for col, batches in ((0, 100), (1, 20), (2, 100), (3, 20)):
        means = PAPER[:, col, None].expand(3, batches)
        cols.append(aggregate_losses(means, torch.full((3, batches), 64.0), "batch_sum"))
    assert _close(blend_weights(*cols)["w"], [0.174819, 0.648744, 0.176437])


def test_mean_aggregation_gives_paper_weights_whatever_the_batch_counts():
    for n_train, n_held, last in ((100, 20, 7), (3, 50, 1), (1, 1, 64)):
        cols = []
        for col, batches in ((0, n_train), (1, n_held), (2, n_train), (3, n_held)):
            sizes = torch.full((3, batches), 64.0)
            sizes[:, -1] = last  # a short last batch must not matter either
            cols.append(aggregate_losses(PAPER[:, col, None].expand(3, batches), sizes, "mean"))
        assert _close(blend_weights(*cols)["w"], [0.008897, 0.978648, 0.012456])


def test_scaling_a_branch_losses_scales_its_raw_weight_inversely():
    scaled = PAPER.clone()
    scaled[0] *= 3.0
    res = blend_weights(*scaled.T)
    assert _close(res["raw"][0], 0.666667)
    assert _close(res["raw"][1:], [220.0, 2.8])
    assert _close(res["w"].sum(), 1.0)


def test_absolute_estimator_is_multibench_delta_false_form():
    # O1 = V1 - T1 (1e-4 when negative), raw = |V1 / O1^2|
    t0, v0, t1, v1 = torch.tensor([[2.0, 2.1, 1.0, 1.6], [2.0, 2.0, 1.5, 1.2]], dtype=torch.float64).T
    res = blend_weights(t0, v0, t1, v1, "absolute")
    assert _close(res["raw"], [1.6 / 0.36, 1.2 / 1e-8])
    assert _close(res["w"].sum(), 1.0)


def test_negative_gain_and_overfit_still_give_normalised_weights():
    res = blend_weights(*torch.tensor([[1.0, 1.0, 1.2, 1.5], [2.0, 2.1, 1.0, 1.6]], dtype=torch.float64).T)
    assert (res["w"] > 0).all() and _close(res["w"].sum(), 1.0)


# ----------------------------------------------------------------------------- heads and step
def test_training_step_loss_is_the_weighted_sum_of_branch_losses():
    method = GBlend(GBlendHyper(), ("a", "b"), 3, {"a": 4, "b": 2})
    enc = torch.nn.ModuleDict({"a": torch.nn.Linear(5, 4), "b": torch.nn.Linear(3, 2)})
    model = SimpleNamespace(encoders=enc, heads=method.build_heads({"a": 4, "b": 2}, 3))
    method.weights = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    batch = {"a": torch.randn(6, 5), "b": torch.randn(6, 3), "label": torch.tensor([0, 1, 2, 0, 1, 2])}
    with torch.no_grad():
        z = model.heads({m: enc[m](batch[m]) for m in ("a", "b")})
        want = sum(
            w * F.cross_entropy(z[k], batch["label"]) for w, k in zip((0.2, 0.3, 0.5), ("a", "b", "fusion"))
        )
    params = list(enc.parameters()) + list(model.heads.parameters())
    opt = torch.optim.SGD(params, lr=0.0)
    ctx = SimpleNamespace(device=torch.device("cpu"), autocast=contextlib.nullcontext, optimizers=_Opts(opt))
    out = method.training_step(model, batch, ctx)
    assert abs(float(out["loss"]) - float(want)) < ATOL
    assert abs(float(out["loss_fusion"]) - float(F.cross_entropy(z["fusion"], batch["label"]))) < ATOL


def test_unimodal_heads_get_no_gradient_when_their_weight_is_zero(tmp_path):
    cfg = _tiny(
        **{
            "method.mode": "fixed",
            "method.fixed_weights": {"image": 0, "fourier": 0, "mm": 1},
            "train.weight_decay": 0.0,
            "epochs": 1,
        }
    )
    seen = {}
    orig = GBlend.training_step

    def spy(self, model, batch, ctx):
        if "before" not in seen:
            seen["before"] = copy.deepcopy(model.heads.unimodal.state_dict())
        out = orig(self, model, batch, ctx)
        seen["after"] = copy.deepcopy(model.heads.unimodal.state_dict())
        return out

    GBlend.training_step = spy
    try:
        train_run(cfg, tmp_path, progress=False)
    finally:
        GBlend.training_step = orig
    for k, v in seen["before"].items():
        assert torch.equal(v, seen["after"][k]), k
    assert (tmp_path / "mfeat").exists()


def test_mlp_fused_head_is_vmz_shape():
    method = GBlend(GBlendHyper(fused_head="mlp"), ("a", "b"), 5, {"a": 6, "b": 4})
    heads = method.build_heads({"a": 6, "b": 4}, 5)
    layers = heads.fused.fc.net
    assert isinstance(layers[0], torch.nn.Dropout)
    shapes = [tuple(m.weight.shape) for m in layers if isinstance(m, torch.nn.Linear)]
    assert shapes == [(5, 10), (5, 5), (5, 5)]


def test_split_variant_branch_zeroes_the_other_inputs():
    method = GBlend(GBlendHyper(unimodal_heads="split"), ("a", "b"), 3, {"a": 4, "b": 2})
    enc = torch.nn.ModuleDict({"a": torch.nn.Linear(5, 4), "b": torch.nn.Linear(3, 2)})
    model = SimpleNamespace(encoders=enc, heads=method.build_heads({"a": 4, "b": 2}, 3))
    batch = {"a": torch.randn(4, 5), "b": torch.randn(4, 3)}
    branch = method._branch(model, "a")
    with torch.no_grad():
        zeroed = {"a": enc["a"](batch["a"]), "b": enc["b"](torch.zeros(4, 3))}
        assert torch.allclose(branch(batch), model.heads(zeroed)["fusion"], atol=ATOL)
        # predict: the joint split logits W_m phi^m + b/M, which sum to the fusion logits
        p = method.predict(model, batch)
        assert torch.allclose(p["a"] + p["b"], p["fusion"], atol=1e-5)


def test_fixed_mode_without_weights_is_a_clear_config_error():
    with pytest.raises(ConfigError, match="fixed_weights"):
        resolve_config("mfeat", "gblend", {"method.mode": "fixed"})
    with pytest.raises(ConfigError, match="estimator"):
        resolve_config("mfeat", "gblend", {"method.estimator": "paper"})


# ----------------------------------------------------------------------------- on real mfeat
def test_heldout_slice_comes_from_train_and_copies_leave_the_model_alone(tmp_path):
    cfg = _tiny(epochs=1)
    seen = {}
    orig = GBlend.estimate

    def spy(self, ctx):
        seen["train"] = set(ctx.train_loader.dataset.indices.tolist())
        seen["heldout"] = set(ctx.heldout_loader.dataset.indices.tolist())
        seen["val"] = set(ctx.val_loader.dataset.indices.tolist())
        before = copy.deepcopy(ctx.model.state_dict())
        orig(self, ctx)
        seen["unchanged"] = all(torch.equal(v, ctx.model.state_dict()[k]) for k, v in before.items())
        seen["opt_state"] = len(ctx.optimizers.main.state)

    GBlend.estimate = spy
    try:
        train_run(cfg, tmp_path, progress=False)
    finally:
        GBlend.estimate = orig
    assert seen["heldout"] and not seen["heldout"] & seen["train"] and not seen["heldout"] & seen["val"]
    assert len(seen["heldout"]) == 20  # 10 % of 20 per class, 10 classes
    assert seen["unchanged"], "estimation changed the main model's parameters or BN buffers"
    assert seen["opt_state"] == 0, "estimation touched the main optimiser"
    splits = json.loads((tmp_path / "mfeat" / cfg.run_name / "seed-0" / "config.json").read_text())["splits"]
    assert splits["train"] == 180 and splits["heldout"] == 20


@pytest.mark.slow
def test_online_mode_reestimates_every_super_epoch_and_logs_weights(tmp_path):
    cfg = _tiny()
    train_run(cfg, tmp_path, progress=False)
    hist = [json.loads(x) for x in (tmp_path / "mfeat" / cfg.run_name / "seed-0" / "history.jsonl").open()]
    estimated = [h["diagnostics"].get("gblend_estimated", False) for h in hist]
    assert estimated == [True, False, True]
    for h in hist:
        d = h["diagnostics"]
        w = [d["blend_w/image"], d["blend_w/fourier"], d["blend_w/fusion"]]
        assert all(x >= 0 for x in w) and abs(sum(w) - 1) < ATOL
        assert {"loss_image", "loss_fourier", "loss_fusion"} <= set(h["train"])
    est = hist[2]["diagnostics"]["gblend_estimate"]
    check = blend_weights(
        *(
            torch.tensor([est[k][c] for k in ("image", "fourier", "fusion")], dtype=torch.float64)
            for c in ("T0", "V0", "T1", "V1")
        )
    )
    assert _close(
        check["w"], [hist[2]["diagnostics"][f"blend_w/{k}"] for k in ("image", "fourier", "fusion")]
    )
    assert hist[1]["diagnostics"]["blend_w/image"] == hist[0]["diagnostics"]["blend_w/image"]


def test_runs_on_three_modalities(tmp_path):
    cfg = _tiny("mfeat3", epochs=1, **{"method.super_epoch": 1})
    res = train_run(cfg, tmp_path, progress=False)
    assert set(res["selection"]["val"]["test"]) == {"fusion", "image", "fourier", "morph"}
    hist = json.loads((tmp_path / "mfeat3" / cfg.run_name / "seed-0" / "history.jsonl").read_text())
    w = [hist["diagnostics"][f"blend_w/{k}"] for k in ("image", "fourier", "morph", "fusion")]
    assert abs(sum(w) - 1) < ATOL


@pytest.mark.slow
def test_resume_equals_uninterrupted_run(tmp_path):
    assert_resume_matches(tmp_path, _tiny(), stop=1)


@pytest.mark.slow
def test_cli_runs_gblend_end_to_end_and_tables_it(tmp_path):
    runner = CliRunner()
    args = [
        "run",
        "-m",
        "gblend",
        "-d",
        "mfeat",
        "--results",
        str(tmp_path),
        "--no-progress",
        "--device",
        "cpu",
        "--set",
        "epochs=2",
        "--set",
        "data.limit_train_per_class=20",
        "--set",
        "method.super_epoch=1",
    ]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    table = runner.invoke(cli, ["table", "--results", str(tmp_path), "--metric", "acc"])
    assert table.exit_code == 0 and "gblend" in table.output
    bad = runner.invoke(
        cli, ["run", "-m", "gblend", "-d", "mfeat", "--results", str(tmp_path), "--set", "method.mode=fixed"]
    )
    assert bad.exit_code == 2 and "fixed_weights" in bad.output and "Traceback" not in bad.output


# ----------------------------------------------------------------------------- helpers
class _Opts:
    def __init__(self, opt):
        self.opt = opt

    def zero_grad(self):
        self.opt.zero_grad()

    def step(self):
        self.opt.step()


# ----------------------------------------------------------------------------- MultiBench flags
def test_multibench_head_finetuning_trains_a_copy_of_the_initial_head_that_predicts_fusion(tmp_path):
    cfg = _tiny(epochs=2, **{"method.finetune_epochs": 2})
    train_run(cfg, tmp_path, progress=False)
    run = tmp_path / "mfeat" / cfg.run_name / "seed-0"
    hist = [json.loads(x) for x in (run / "history.jsonl").open()]
    assert "gblend_finetune_loss" not in hist[0]["diagnostics"]  # super-epoch 2: after epoch 1 only
    assert hist[1]["diagnostics"]["gblend_finetune_loss"] > 0
    state = torch.load(run / "last.ckpt", weights_only=False)["model"]
    ft = {k: v for k, v in state.items() if k.startswith("heads.finetuned.")}
    fused = {k.replace("finetuned", "fused"): v for k, v in ft.items()}
    assert ft and all(not torch.equal(v, state[k]) for k, v in fused.items())  # trained apart
    assert GBlendHyper().finetune_epochs == 0 and GBlendHyper().loss_mode == "eval"  # mmbench defaults


def test_loss_mode_train_measures_branch_losses_in_train_mode():
    method = GBlend(GBlendHyper(loss_mode="train"), ("a", "b"), 3, {"a": 4, "b": 4})
    modes = []
    branch = torch.nn.Sequential(torch.nn.Linear(2, 3))
    branch.register_forward_pre_hook(lambda mod, inp: modes.append(mod.training))
    batch = {"a": torch.randn(4, 2), "label": torch.tensor([0, 1, 2, 0])}
    ctx = SimpleNamespace(device=torch.device("cpu"), autocast=contextlib.nullcontext)
    wrapped = _Wrap(branch)
    method._measure(wrapped, [batch], ctx)
    GBlend(GBlendHyper(), ("a", "b"), 3, {"a": 4, "b": 4})._measure(wrapped, [batch], ctx)
    assert modes == [True, False]


class _Wrap(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, batch):
        return self.inner(batch["a"])
