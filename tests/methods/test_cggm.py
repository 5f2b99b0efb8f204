"""CGGM: the numeric cases of the method's specification, two steps against a restatement of the
official ``train`` loop (the direction term one step late, encoder scaling, clip), state across a
resume, and the settings file."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _method_runs import assert_resume_equal, check_method_toml, mfeat_setup

from mmbench.methods.cggm import direction_grads, direction_loss, magnitude_coefficients

ATOL = 1e-6


def _t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_magnitude_coefficients_of_the_spec():
    y = torch.tensor([0, 1, 2, 1])
    c_a = _t([2, 0, 0], [0, 1, 0.5], [0, 2, 1], [0.2, 0.1, 0])
    c_v = _t([0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0.3, 0.1])
    acc = torch.stack([(c.argmax(1) == y).double().mean() for c in (c_a, c_v)])
    assert acc.tolist() == [0.5, 0.75]
    b = magnitude_coefficients(acc, _t(0.25, 0.25))
    assert b.tolist() == pytest.approx([0.666667, 0.333333], abs=ATOL)
    assert (1.3 * b).tolist() == pytest.approx([0.866667, 0.433333], abs=ATOL)
    assert magnitude_coefficients(acc, _t(0.0, 0.0)).tolist() == pytest.approx([0.6, 0.4], abs=ATOL)
    assert magnitude_coefficients(acc, acc).tolist() == pytest.approx([1.0, 1.0], abs=ATOL)
    opposite = magnitude_coefficients(_t(0.5, 0.25), _t(0.25, 0.5))
    assert opposite.tolist() == pytest.approx([-24999999.0, 25000001.0], rel=1e-6)


W_CLS = [_t([1, 0], [0, 1], [1, 1]), _t([0.5, -0.5], [0.2, 0.1], [0, 1])]
W_FUS = [_t([0.8, 0.1], [0.1, 0.9], [0.7, 1.2]), _t([-0.5, 0.5], [0.3, 0], [0.1, 0.2])]


def test_direction_term_and_its_gradient_on_the_fused_blocks():
    b = _t(2 / 3, 1 / 3)
    assert float(direction_loss(b, W_CLS, W_FUS)) == pytest.approx(0.214765, abs=ATOL)
    d_a, d_v = direction_grads(b, W_CLS, W_FUS, lam=0.2)
    torch.testing.assert_close(
        d_a, _t([-0.002765, 0.001914], [0.001914, -0.000851], [-0.004679, 0.004892]), atol=ATOL, rtol=0
    )
    torch.testing.assert_close(
        d_v, _t([-0.010459, 0.010459], [-0.010459, -0.003347], [-0.001255, -0.035978]), atol=ATOL, rtol=0
    )


def _main_step_grads(opt, model):
    """Record every parameter's gradient when the optimiser steps (after the clip)."""
    seen = []

    def hook(_opt, _args, _kwargs):
        seen.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})

    opt.register_step_pre_hook(hook)
    return seen


def _official_two_steps(meth, model, batches, hp):
    """``foodtrain.py`` ``train`` restated with plain SGD(lr=0) so the weights stay put: the
    L_gm of step 1 (kept graph on the live weights) joins the loss of step 2; classifiers get only
    their CE; encoder grads times rho B; clip of encoders + fused head; returns step-2 grads."""
    mods = meth.modalities
    main = [p for m in mods for p in model.encoders[m].parameters()] + list(model.heads.fused.parameters())
    acc_prev = torch.zeros(len(mods))
    old_gm = None
    out = None
    for batch in batches:
        y = batch["label"]
        feats = {m: model.encoders[m](batch[m]) for m in mods}
        z = model.heads.fused(feats)["fusion"]
        loss = F.cross_entropy(z, y) + (hp["lam"] * old_gm if old_gm is not None else 0.0)
        model.zero_grad()
        loss.backward()
        c = {m: model.heads.guidance[m](feats[m].detach()) for m in mods}
        for p in model.heads.guidance.parameters():
            p.grad = None
        sum(F.cross_entropy(c[m], y) for m in mods).backward()
        acc = torch.stack([(c[m].argmax(1) == y).float().mean() for m in mods])
        d = acc - acc_prev
        s = d.sum() + 1e-8
        b = (s - d) / s
        acc_prev = acc
        blocks = torch.split(model.heads.fused.fc.weight, model.heads.fused.dims, dim=1)
        cos = [
            F.cosine_similarity(model.heads.guidance[m].out_layer.weight.reshape(1, -1), w.reshape(1, -1))[0]
            for m, w in zip(mods, blocks)
        ]
        old_gm = (b.abs().sum() - sum(b[j].detach() * cos[j] for j in range(len(mods)))) / len(mods)
        for j, m in enumerate(mods):
            for p in model.encoders[m].parameters():
                p.grad = p.grad * hp["rho"] * b[j]
        torch.nn.utils.clip_grad_norm_(main, hp["clip"])
        out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out


@pytest.mark.parametrize("dataset", ["mfeat", "mfeat3"])
def test_two_steps_equal_the_official_loop(dataset):
    hp = {"rho": 1.3, "lam": 0.2, "clip": 0.8}
    meth, model, batch, ctx = mfeat_setup("cggm", dataset, params=hp)
    half = {k: v[:16] for k, v in batch.items()}
    rest = {k: v[16:] for k, v in batch.items()}
    model.eval()  # BN on running statistics: both passes see the same function of the weights
    ref_state = {k: v.clone() for k, v in model.state_dict().items()}
    expected = _official_two_steps(meth, model, [half, rest], hp)
    model.load_state_dict(ref_state)
    ctx.optimizers.optimizers["main"] = torch.optim.SGD(meth.main_parameters(model), lr=0.0)
    ctx.optimizers.optimizers["cls"] = torch.optim.SGD(model.heads.guidance.parameters(), lr=0.0)
    seen = _main_step_grads(ctx.optimizers.optimizers["main"], model)
    meth.training_step(model, half, ctx)
    meth.training_step(model, rest, ctx)
    for name, g in expected.items():
        if name.startswith("heads.guidance"):
            continue
        torch.testing.assert_close(seen[1][name], g, rtol=1e-4, atol=1e-6, msg=name)
    diags = ctx.collect_diagnostics()
    assert {f"B/{m}" for m in meth.modalities} <= set(diags)


def test_guidance_classifiers_never_reach_the_encoders_and_are_not_predicted():
    meth, model, batch, ctx = mfeat_setup("cggm", params={"rho": 1.0, "lam": 0.0, "clip": 1e9})
    y = batch["label"]
    feats = {m: model.encoders[m](batch[m]) for m in meth.modalities}
    loss = F.cross_entropy(model.heads.fused(feats)["fusion"], y)
    enc = list(model.encoders.parameters())
    plain = torch.autograd.grad(loss, enc, allow_unused=True)
    ctx.optimizers.optimizers["main"] = torch.optim.SGD(meth.main_parameters(model), lr=0.0)
    seen = _main_step_grads(ctx.optimizers.optimizers["main"], model)
    meth.training_step(model, batch, ctx)
    b = [ctx.collect_diagnostics()[f"B/{m}"] for m in meth.modalities]
    names = [n for n, _ in model.encoders.named_parameters()]
    for n, g in zip(names, plain):
        if g is None:
            continue
        j = meth.modalities.index(n.split(".")[0])
        torch.testing.assert_close(seen[0]["encoders." + n], g * b[j], rtol=1e-4, atol=1e-6)
    model.eval()
    assert set(meth.predict(model, batch)) == {"fusion", *meth.modalities}


def test_state_round_trips_the_coefficient_memory():
    meth, model, batch, ctx = mfeat_setup("cggm")
    meth.training_step(model, batch, ctx)
    state = meth.state_dict()
    fresh, *_ = mfeat_setup("cggm")
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.acc_prev, meth.acc_prev)
    for a, b in zip(fresh.gm[1] + fresh.gm[2], meth.gm[1] + meth.gm[2]):
        torch.testing.assert_close(a, b)


def test_unknown_flag_is_refused_in_one_line():
    from mmbench.benchmark.config import resolve_config
    from mmbench.errors import ConfigError

    with pytest.raises(ConfigError, match="method.direction_on must be one of weights, grads"):
        resolve_config("mfeat", "cggm", {"method.direction_on": "both"}, seed=0, device="cpu")


def test_cli_resume_equals_uninterrupted_run(tmp_path):
    hist = assert_resume_equal(tmp_path, "mfeat", "cggm", {"epochs": 2, "data.preset": "smoke"}, [1])
    assert {"B/image", "B/fourier", "cls_acc/image"} <= set(hist[-1]["diagnostics"])


def test_cggm_config_values_are_hyper_parameters_with_sources():
    check_method_toml("cggm")
