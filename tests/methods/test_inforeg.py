"""inforeg: every numeric case of its spec (§8), the step against a restatement of the official
``main.py`` step on real mfeat batches, the refusals, the flags, the conformance kit and resume."""

import copy

import pytest
import torch
import torch.nn.functional as F
from _method_runs import assert_resume_equal, check_method_toml, mfeat_setup, plain_sgd

from mmbench.benchmark.config import resolve_config
from mmbench.errors import ConfigError
from mmbench.methods.heads import ConcatHead
from mmbench.methods.inforeg import (
    InfoReg,
    add_proximal_gradient,
    fisher_increment,
    fisher_weights,
    regulation_betas,
    window_k,
)

ATOL = 1e-6


# ----------------------------------------------------------------------------- spec §8
def test_window_k_matches_the_official_ten_epoch_means():
    t = [4, 6, 7, 7.5, 7.8, 8, 8.1, 8.15, 8.2, 8.2, 8.2, 8.1, 8.0]
    want = [
        1,
        1,
        0.6,
        0.411765,
        0.306122,
        0.241486,
        0.198511,
        0.167355,
        0.14412,
        0.126641,
        0.112406,
        0.054439,
        0.026498,
        0.012461,
    ]
    got = [window_k(t, e) for e in range(14)]
    assert got == pytest.approx(want, abs=ATOL)
    assert [k > 0.05 for k in got] == [True] * 12 + [False] * 2


def _spec_logits():
    head = ConcatHead([2, 2], 3, ("a", "v"))
    with torch.no_grad():
        head.fc.weight.copy_(torch.tensor([[1, 0, 0.5, 0], [0, 1, 0, 0.5], [0.2, 0.2, 0.2, 0.2]]))
        head.fc.bias.copy_(torch.tensor([0.2, -0.2, 0.0]))
    feats = {"a": torch.tensor([[1.0, 0], [0.5, 0.5]]), "v": torch.tensor([[0.0, 1], [0.2, 0.1]])}
    return head(feats)


def test_step_logits_loss_and_scores_match_the_spec():
    z = _spec_logits()
    y = torch.tensor([0, 1])
    torch.testing.assert_close(
        z["fusion"], torch.tensor([[1.2, 0.3, 0.4], [0.8, 0.35, 0.26]]), atol=ATOL, rtol=0
    )
    torch.testing.assert_close(z["a"], torch.tensor([[1.1, -0.1, 0.2], [0.6, 0.4, 0.2]]), atol=ATOL, rtol=0)
    torch.testing.assert_close(z["v"], torch.tensor([[0.1, 0.4, 0.2], [0.2, -0.05, 0.06]]), atol=ATOL, rtol=0)
    loss = sum(F.cross_entropy(z[k], y) for k in ("fusion", "a", "v"))
    assert loss.item() == pytest.approx(2.988414, abs=ATOL)
    s_a = F.softmax(z["a"], 1).gather(1, y[:, None]).sum()
    s_v = F.softmax(z["v"], 1).gather(1, y[:, None]).sum()
    assert (s_a.item(), s_v.item()) == pytest.approx((0.914494, 0.583525), abs=ATOL)
    b = regulation_betas(s_a, s_v, 0.3, 0.05, 0.95, 0.1)
    assert (b[0].item(), b[1].item()) == pytest.approx((1.307476, 0.0), abs=ATOL)
    b = regulation_betas(s_a, s_v, 0.05, 0.05, 0.95, 0.1)  # strict k > thr
    assert (b[0].item(), b[1].item()) == (0.0, 0.0)
    b = regulation_betas(s_v, s_a, 0.3, 0.05, 0.95, 0.1)  # the second modality leads
    assert (b[0].item(), b[1].item()) == pytest.approx((0.0, 0.137629), abs=ATOL)
    b = regulation_betas(s_v, s_a, 0.3, 0.04, 0.95, 0.1, regulate_second=False)  # March release
    assert (b[0].item(), b[1].item()) == (0.0, 0.0)
    b = regulation_betas(s_a, s_a.clone(), 0.3, 0.05, 0.95, 0.1)  # equal scores regulate nothing
    assert (b[0].item(), b[1].item()) == (0.0, 0.0)


def test_regulated_gradient_matches_the_spec():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    p.grad = torch.tensor([0.1, -0.2])
    add_proximal_gradient([p], [torch.tensor([0.5, 2.5])], torch.tensor(1.307476))
    torch.testing.assert_close(p.grad, torch.tensor([0.753738, -0.853738]), atol=ATOL, rtol=0)


def test_fisher_trace_of_two_layers_over_two_steps_is_3_625():
    w1, w2 = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2, 2))
    total = torch.zeros(())
    for g1, g2 in (([1.0, -1.0], [[0.5, 0.5], [0, 0]]), ([0.0, 2.0], [[1.0, 0], [0, 1]])):
        w1.grad, w2.grad = torch.tensor(g1), torch.tensor(g2)
        total = total + fisher_increment([w1, w2])
    assert total.item() == pytest.approx(3.625, abs=ATOL)


def test_fisher_weights_are_conv_and_linear_weights_only():
    enc = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(), torch.nn.Linear(8, 3)
    )
    assert [tuple(p.shape) for p in fisher_weights(enc)] == [(2, 1, 3, 3), (3, 8)]


# ----------------------------------------------------------------------------- step on mfeat
def _official_step(model, batch, anchor, k, hp, modalities):
    """Restatement of main.py:359-543 on a copy: the three CEs, backward, betas from the summed
    true-class probabilities, + beta (theta - anchor) on every encoder gradient; returns the
    gradients the optimiser steps on and the Fisher increment of each encoder."""
    ref = copy.deepcopy(model)
    a, v = modalities
    y = batch["label"]
    feats = {m: ref.encoders[m](batch[m]) for m in modalities}
    w = ref.heads.fc.weight
    wa, wv = w[:, : feats[a].shape[1]], w[:, feats[a].shape[1] :]
    out = ref.heads.fc(torch.cat([feats[a], feats[v]], 1))
    za = feats[a] @ wa.t() + ref.heads.fc.bias / 2
    zv = feats[v] @ wv.t() + ref.heads.fc.bias / 2
    (F.cross_entropy(out, y) + F.cross_entropy(za, y) + F.cross_entropy(zv, y)).backward()
    score_a = sum(F.softmax(za, 1)[i, y[i]] for i in range(len(y)))
    score_v = sum(F.softmax(zv, 1)[i, y[i]] for i in range(len(y)))
    beta_a = beta_v = 0.0
    if k > hp.window_threshold and score_a > score_v:
        beta_a = hp.c_first * torch.exp(torch.tanh(score_a - score_v))
    elif k > hp.window_threshold and score_a < score_v:
        beta_v = hp.c_second * torch.exp(torch.tanh(score_v - score_a))
    fim = {}
    for m, beta in ((a, beta_a), (v, beta_v)):
        for p, p0 in zip(ref.encoders[m].parameters(), anchor[m]):
            p.grad = p.grad + beta * (p.detach() - p0)
        fim[m] = sum(
            (mod.weight.grad**2).mean()
            for mod in ref.encoders[m].modules()
            if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d))
        )
    return {n: p.grad.clone() for n, p in ref.named_parameters()}, fim


@pytest.mark.parametrize("lead", ["first", "second"])
def test_step_equals_the_official_step_on_mfeat(lead):
    method, model, batch, ctx = mfeat_setup("inforeg")
    ctx.optimizers = plain_sgd(model, lr=1.0)
    ctx.epoch = 0
    method.on_epoch_start(ctx)
    a, v = method.modalities
    torch.manual_seed(1)
    with torch.no_grad():  # move the encoders away from the anchor so the pull is not zero
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        if lead == "second":  # make the second modality's split logits the confident ones
            w = model.heads.fc.weight
            w[:, : method.feature_dims[a]] *= 0.01
    anchor = method._anchor
    grads, fim = _official_step(model, batch, anchor, method.k, method.hp, method.modalities)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    method.training_step(model, batch, ctx)
    for n, p in model.named_parameters():
        torch.testing.assert_close(before[n] - p.detach(), grads[n], atol=1e-5, rtol=1e-4, msg=n)
    for m in method.modalities:
        assert method._acc[m].item() == pytest.approx(fim[m].item(), rel=1e-5)
    logs = ctx.collect_diagnostics()
    regulated = a if lead == "first" else v
    assert logs[f"beta_{regulated}"] > 0 and logs[f"beta_{a if regulated == v else v}"] == 0


def test_outside_the_window_the_step_has_no_pull():
    method, model, batch, ctx = mfeat_setup("inforeg")
    ctx.optimizers = plain_sgd(model, lr=1.0)
    method.traces[method.modalities[0]] = [5.0] * 20  # flat traces: k = 0
    ctx.epoch = 20
    method.on_epoch_start(ctx)
    assert method.k == 0 and not method.regulating
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    grads, _ = _official_step(model, batch, method._anchor, method.k, method.hp, method.modalities)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    method.training_step(model, batch, ctx)
    for n, p in model.named_parameters():
        torch.testing.assert_close(before[n] - p.detach(), grads[n], atol=1e-5, rtol=1e-4, msg=n)


def test_window_latch_keeps_regulation_off_once_the_window_closed():
    method, model, _, ctx = mfeat_setup("inforeg", params={"window_latch": True})
    first = method.modalities[0]
    method.traces[first] = [5.0] * 20
    ctx.epoch = 20
    method.on_epoch_start(ctx)
    assert method.latched_off
    method.traces[first] += [50.0]  # a jump would reopen the window without the latch
    ctx.epoch = 21
    method.on_epoch_start(ctx)
    assert method.k > 0.05 and not method.regulating


def test_aux_heads_variant_gives_the_unimodal_logits_their_own_heads():
    method, model, batch, ctx = mfeat_setup("inforeg", params={"unimodal_logits": "aux_heads"})
    out = method.predict(model, batch)
    feats = method.encode(model, batch)
    for m in method.modalities:
        torch.testing.assert_close(out[m], model.heads.aux[m](feats[m]))
    assert "auxiliary" in method.head_meanings()[method.modalities[0]]
    method.on_epoch_start(ctx)
    method.training_step(model, batch, ctx)  # the aux heads get gradients from their CE terms
    assert all(p.grad is not None for p in model.heads.aux.parameters())


# ----------------------------------------------------------------------------- harness
def test_inforeg_refuses_three_modalities_and_bad_flags():
    with pytest.raises(ConfigError, match="at most 2 modalities"):
        resolve_config("mfeat3", "inforeg")
    with pytest.raises(ConfigError, match="unimodal_logits"):
        resolve_config("mfeat", "inforeg", {"method.unimodal_logits": "concat"})
    with pytest.raises(ConfigError, match="window_modality"):
        resolve_config("mfeat", "inforeg", {"method.window_modality": "audio"})
    with pytest.raises(ValueError, match="inforeg supports exactly 2 modalities; got 3"):
        InfoReg(InfoReg.Hyper(), ("a", "b", "c"), 3, {"a": 2, "b": 2, "c": 2}).build_heads(
            {"a": 2, "b": 2, "c": 2}, 3
        )


def test_inforeg_settings_carry_sources_and_official_setup():
    check_method_toml("inforeg")
    cfg = resolve_config("cremad", "inforeg", {"protocol": "official"})
    assert (cfg.train.lr, cfg.train.epochs, cfg.train.step_size, cfg.train.step_at) == (
        0.002,
        50,
        30,
        "epoch_end",
    )


@pytest.mark.slow
def test_inforeg_resume_equals_uninterrupted_run_with_trace_history(tmp_path):
    hist = assert_resume_equal(
        tmp_path,
        "mfeat",
        "inforeg",
        {"epochs": 4, "data.limit_train_per_class": 10, "method.window_span": 2},
        [2],
    )
    ks = [h["diagnostics"]["window_k"] for h in hist]
    assert ks[0] == 1.0 and ks[1] == 1.0 and ks[2] != 1.0  # the traces drove k after the resume point


def test_cost_measurement_steps_outside_an_epoch_hook():
    """``cost.step_flops`` runs one step on copies after the last epoch, without on_epoch_start."""
    from mmbench.benchmark.cost import step_flops
    from mmbench.benchmark.registry import get_dataset, get_method
    from mmbench.benchmark.trainer import build_run

    cfg = resolve_config("mfeat", "inforeg", {"data.limit_train_per_class": 5, "epochs": 2}, device="cpu")
    run = build_run(cfg, get_dataset("mfeat"), get_method("inforeg"), None, torch.device("cpu"))
    assert step_flops(run)["train_step"] > 0
