"""MSLR (specs/methods/mslr.md): every numeric case of §8, per-modality groups, the dynamic rule
on val accuracy with the schedule kept, the refused smooth strategy, three modalities, resume
and the CLI on real mfeat."""

from __future__ import annotations

import contextlib
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from _method_runs import assert_resume_matches
from click.testing import CliRunner

from mmbench.benchmark.config import TrainConfig, resolve_config
from mmbench.benchmark.trainer import train_run
from mmbench.cli import cli
from mmbench.errors import ConfigError
from mmbench.methods.mslr import MSLR, MSLRHyper, dynamic_ratio

ATOL = 1e-6


def _tiny(dataset="mfeat", **sets):
    over = {"epochs": 4, "data.limit_train_per_class": 20, "method.k": 2}
    over.update(sets)
    return resolve_config(dataset, "mslr", over, seed=0, device="cpu")


def _toy(hyper, train_cfg, dims=None):
    dims = dims or {"a": 3, "b": 2}
    method = MSLR(hyper, tuple(dims), 4, dims)
    enc = torch.nn.ModuleDict({m: torch.nn.Linear(5, d) for m, d in dims.items()})
    model = SimpleNamespace(encoders=enc, heads=method.build_heads(dims, 4))
    return method, model, method.configure_optimizers(model, train_cfg)


def _epoch_end(method, opts, accs, epoch):
    logs = {}
    ctx = SimpleNamespace(
        optimizers=opts,
        epoch=epoch,
        val_metrics={m: {"acc": a} for m, a in accs.items()},
        log_epoch=logs.__setitem__,
    )
    method.on_epoch_end(ctx)
    return logs


# ----------------------------------------------------------------------------- §8 numbers
def test_agm_variant_ratio_and_coefficients_match_spec():
    hist = [0.50, 0.52, 0.54, 0.55, 0.56, 0.60]
    assert abs(dynamic_ratio(hist, 5, include_current=False) - 1.123596) < ATOL
    hyper = MSLRHyper(dynamic_variant="agm_grad_scale", c_init={"a": 0.9, "b": 1.1})
    method, _, opts = _toy(hyper, TrainConfig(schedule="constant"))
    for e, acc in enumerate(hist):
        _epoch_end(method, opts, {"a": acc, "b": acc}, e)
    assert abs(method.grad_scale("a") - 1.011236) < ATOL
    assert abs(method.grad_scale("b") - 1.235955) < ATOL


def test_agm_variant_scales_each_group_gradient_inside_the_window_only():
    hyper = MSLRHyper(dynamic_variant="agm_grad_scale", c_init={"a": 0.5, "b": 2.0}, window_end=1)
    method, model, opts = _toy(
        hyper, TrainConfig(schedule="constant", momentum=0.0, weight_decay=0.0, lr=1.0)
    )
    batch = {"a": torch.randn(6, 5), "b": torch.randn(6, 5), "label": torch.arange(6) % 4}

    def grads_at(epoch):
        params = list(model.encoders.parameters()) + list(model.heads.parameters())
        before = [p.detach().clone() for p in params]
        ctx = SimpleNamespace(epoch=epoch, optimizers=opts, autocast=contextlib.nullcontext)
        method.training_step(model, batch, ctx)
        moved = {n: b - p.detach() for (n, p), b in zip(model.encoders.named_parameters(), before)}
        for p, b in zip(params, before):
            p.data.copy_(b)  # every step starts from the same parameters
        return moved

    # reference gradient of L = CE(sum_m z^m, y)
    z = model.heads({m: model.encoders[m](batch[m]) for m in ("a", "b")})["fusion"]
    ref = torch.autograd.grad(F.cross_entropy(z, batch["label"]), list(model.encoders.parameters()))
    ref = dict(zip((n for n, _ in model.encoders.named_parameters()), ref))
    inside, outside = grads_at(0), grads_at(1)
    for n, g in ref.items():
        scale = 0.5 if n.startswith("a.") else 2.0
        assert torch.allclose(inside[n], scale * g, atol=ATOL)
        assert torch.allclose(outside[n], g, atol=ATOL)


def test_cumulative_variant_ratio_and_lr_match_spec():
    hist = [0.52, 0.54, 0.55, 0.56, 0.60]
    assert abs(dynamic_ratio(hist, 5) - 1.083032) < ATOL
    method, _, opts = _toy(MSLRHyper(k=5, eta={"a": 1e-3}), TrainConfig(schedule="constant", lr=1e-2))
    for e, acc in enumerate(hist):
        logs = _epoch_end(method, opts, {"a": acc, "b": 0.5}, e)
        if e < 4:
            assert logs["mslr_lr/a"] == 1e-3  # no update before k accuracies exist
    assert abs(opts.main.param_groups[0]["lr"] - 1.083032e-3) < 1e-9
    assert abs(method.c["a"] - 1.083032) < ATOL
    assert opts.main.param_groups[1]["lr"] == pytest.approx(1e-2)  # constant b history: ratio 1


def test_keep_moves_each_group_by_its_own_learning_rate():
    eta = {"a": 0.3, "b": 0.02}
    _, model, opts = _toy(
        MSLRHyper(strategy="keep", eta=eta), TrainConfig(schedule="constant", momentum=0.0, weight_decay=0.0)
    )
    groups = {g["modality"]: g["params"] for g in opts.main.param_groups}
    before = {m: [p.detach().clone() for p in ps] for m, ps in groups.items()}
    g = 0.7
    for ps in groups.values():
        for p in ps:
            p.grad = torch.full_like(p, g)
    opts.step()
    for m, ps in groups.items():
        for p, p0 in zip(ps, before[m]):
            assert torch.allclose(p - p0, torch.full_like(p, -eta[m] * g), atol=ATOL)
    # a group is encoder m + head m, nothing else
    assert {id(p) for p in groups["a"]} == {id(p) for p in model.encoders["a"].parameters()} | {
        id(p) for p in model.heads.fc["a"].parameters()
    }


def test_predict_fusion_is_the_sum_of_modality_logits():
    method, model, _ = _toy(MSLRHyper(), TrainConfig(), {"a": 3, "b": 2, "c": 4})
    out = method.predict(model, {m: torch.randn(5, 5) for m in ("a", "b", "c")})
    assert torch.allclose(out["a"] + out["b"] + out["c"], out["fusion"], atol=ATOL)


# ----------------------------------------------------------------------------- refusals
def test_smooth_strategy_is_refused_as_unspecified():
    with pytest.raises(ConfigError, match="not specified") as info:
        resolve_config("mfeat", "mslr", {"method.strategy": "smooth"})
    assert isinstance(info.value, NotImplementedError)
    res = CliRunner().invoke(cli, ["run", "-m", "mslr", "-d", "mfeat", "--set", "method.strategy=smooth"])
    assert res.exit_code == 2 and "mslr strategy 'smooth' is not specified" in res.output
    assert "Traceback" not in res.output


def test_bad_eta_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown modalities"):
        resolve_config("mfeat", "mslr", {"method.eta": {"audio": 0.1}})


# ----------------------------------------------------------------------------- on real mfeat
def _history(root, cfg):
    path = root / cfg.dataset / cfg.run_name / "seed-0" / "history.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_dynamic_rule_follows_val_accuracy_and_keeps_the_schedule(tmp_path):
    # StepLR(2, 0.5) stepped at epoch start: s(e) = 0.5 ** ((e + 1) // 2) after epoch e's step
    cfg = _tiny(**{"train.step_size": 2, "train.gamma": 0.5, "method.eta": {"image": 0.02}})
    train_run(cfg, tmp_path, progress=False)
    hist = _history(tmp_path, cfg)
    c = {"image": 1.0, "fourier": 1.0}
    for e, h in enumerate(hist):
        d = h["diagnostics"]
        for i, (m, eta) in enumerate((("image", 0.02), ("fourier", 0.01))):
            accs = [x["val"][m]["acc"] for x in hist[: e + 1]]
            ratio = dynamic_ratio(accs, 2)
            if ratio is not None:
                c[m] *= ratio
            assert d[f"mslr_c/{m}"] == pytest.approx(c[m], abs=ATOL)
            want = c[m] * eta * 0.5 ** ((e + 1) // 2)
            assert d[f"mslr_lr/{m}"] == pytest.approx(want, rel=1e-9)
            assert h["lr"][f"main/{i}"] == pytest.approx(want, rel=1e-9)
    assert c["image"] != 1.0 or c["fourier"] != 1.0  # the rule acted


def test_runs_on_three_modalities_with_three_learning_rates(tmp_path):
    cfg = _tiny("mfeat3", epochs=2)
    res = train_run(cfg, tmp_path, progress=False)
    assert set(res["selection"]["val"]["test"]) == {"fusion", "image", "fourier", "morph"}
    assert set(_history(tmp_path, cfg)[-1]["lr"]) == {"main/0", "main/1", "main/2"}


@pytest.mark.slow
def test_resume_equals_uninterrupted_run(tmp_path):
    assert_resume_matches(tmp_path, _tiny(), stop=2)


@pytest.mark.slow
def test_cli_runs_mslr_end_to_end_and_tables_it(tmp_path):
    runner = CliRunner()
    args = [
        "run",
        "-m",
        "mslr",
        "-d",
        "mfeat",
        "--results",
        str(tmp_path),
        "--no-progress",
        "--device",
        "cpu",
    ]
    args += ["--set", "epochs=2", "--set", "data.limit_train_per_class=20", "--set", "method.strategy=keep"]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    table = runner.invoke(cli, ["table", "--results", str(tmp_path), "--metric", "acc"])
    assert table.exit_code == 0 and "mslr" in table.output
