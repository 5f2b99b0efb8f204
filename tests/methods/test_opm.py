"""opm and ogm_tpami (specs/methods/opm.md): every numeric case of §8, the training steps against
a restatement of the official BML_TPAMI2024 code on real mfeat batches (drops drawn from the
method's own streams), the skipped batch, the refusals, the conformance kit and exact resume."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from _method_runs import assert_resume_equal, check_method_toml, cli_short_run, mfeat_setup, plain_sgd
from click.testing import CliRunner

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.registry import get_method
from mmbench.benchmark.seeding import stream_generator
from mmbench.cli import cli
from mmbench.errors import ConfigError
from mmbench.methods import opm as opm_module
from mmbench.methods.heads import ConcatHead
from mmbench.methods.ogm_ge import confidence_scores
from mmbench.methods.ogm_tpami import OGMTPAMIHyper, tpami_active, tpami_coefficients
from mmbench.methods.opm import drop_features, drop_probabilities, drop_rate
from mmbench.testing import check_method

ATOL = 1e-6


def spec_head():
    head = ConcatHead([2, 2], 3, ("a", "v"))
    with torch.no_grad():
        head.fc.weight.copy_(torch.tensor([[1, 0, 0.5, 0], [0, 1, 0, 0.5], [0.5, 0.5, 0.5, 0.5]]))
        head.fc.bias.copy_(torch.tensor([0.2, -0.2, 0.0]))
    return head


FEATS = {"a": torch.tensor([[1, 0.5], [0.2, 0.1]]), "v": torch.tensor([[0.3, 0.2], [0.1, 0.4]])}
Y = torch.tensor([0, 1])


def spec_scores():
    s = confidence_scores(spec_head().split_logits(FEATS), Y, ("a", "v"))
    return s["a"], s["v"]


# ----------------------------------------------------------------------------- §8 opm numbers
def test_base_case_scores_drop_probabilities_theta_and_rescale():
    s_a, s_v = spec_scores()
    assert s_a.item() == pytest.approx(0.739045, abs=ATOL)
    assert s_v.item() == pytest.approx(0.671093, abs=ATOL)
    assert drop_probabilities(s_a, s_v, 0.5, 0.5).tolist() == pytest.approx([0.525228, 0.0], abs=ATOL)
    assert drop_probabilities(s_a, s_v, 0.4, 0.5).tolist() == pytest.approx([0.420182, 0.0], abs=ATOL)
    theta = drop_rate(drop_probabilities(s_a, s_v, 0.5, 0.5), [2, 2])
    assert theta.item() == pytest.approx(0.262614, abs=ATOL)
    assert (1 / (1 - theta)).item() == pytest.approx(1.356142, abs=ATOL)


def test_base_case_dropped_features_and_losses():
    s_a, s_v = spec_scores()
    q = drop_probabilities(s_a, s_v, 0.5, 0.5)
    keep = torch.tensor([[False, True], [True, True]])  # keep^a = [0, 1], keep^v = [1, 1]
    (fa, fv), rows = drop_features([FEATS["a"], FEATS["v"]], keep, drop_rate(q, [2, 2]))
    torch.testing.assert_close(fa, torch.tensor([[0, 0], [0.271228, 0.135614]]), atol=ATOL, rtol=0)
    torch.testing.assert_close(
        fv, torch.tensor([[0.406843, 0.271228], [0.135614, 0.542457]]), atol=ATOL, rtol=0
    )
    assert rows.all()
    head = spec_head()
    assert F.cross_entropy(head.fc(torch.cat([fa, fv], 1)), Y).item() == pytest.approx(1.137343, abs=ATOL)
    assert F.cross_entropy(head(FEATS)["fusion"], Y).item() == pytest.approx(1.032319, abs=ATOL)


@pytest.mark.parametrize(
    "scores,q_base,want",
    [
        ((1.4, 0.5), 0.5, (0.736702, 0)),
        ((0.5, 1.4), 0.5, (0, 0.736702)),
        ((1, 1), 0.5, (0, 0)),
        ((1.4, 0.5), 0.8, (1, 0)),
    ],
)
def test_drop_probabilities(scores, q_base, want):
    q = drop_probabilities(torch.tensor(scores[0]), torch.tensor(scores[1]), q_base, 0.5)
    assert q.tolist() == pytest.approx(list(want), abs=ATOL)


@pytest.mark.parametrize("dims,want", [((3, 1), 0.45), ((1, 3), 0.15)])
def test_theta_is_the_dimension_weighted_mean(dims, want):
    assert drop_rate(torch.tensor([0.6, 0.0]), dims).item() == pytest.approx(want, abs=ATOL)


def test_rows_without_a_kept_modality_are_removed_and_the_rest_rescaled_by_2_5():
    theta = drop_rate(torch.tensor([0.6, 0.6]), [2, 2])
    keep = torch.tensor([[False, False], [True, True]])
    (fa, fv), rows = drop_features([FEATS["a"], FEATS["v"]], keep, theta)
    assert rows.tolist() == [False, True]
    torch.testing.assert_close(fa[rows], 2.5 * FEATS["a"][1:], atol=ATOL, rtol=0)
    torch.testing.assert_close(fv[rows], 2.5 * FEATS["v"][1:], atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------- §8 ogm_tpami numbers
@pytest.mark.parametrize(
    "scores,alpha,plus,want",
    [
        (None, 0.8, False, (0.293077, 1)),
        (None, 1.0, False, (0.199050, 1)),
        ((1.4, 0.5), 0.8, False, (0.022413, 1)),
        ((0.5, 1.4), 0.8, False, (1, 0.022413)),
        ((1.0, 1.0), 0.8, False, (1, 0.335963)),  # a tie slows the second modality
        (None, 0.8, True, (1, 4)),  # ogm_plus, audio dominant: the weaker visual sped up
        ((0.5, 1.4), 0.8, True, (4, 1)),
    ],
)
def test_tpami_coefficients(scores, alpha, plus, want):
    s_a, s_v = spec_scores() if scores is None else (torch.tensor(scores[0]), torch.tensor(scores[1]))
    k_a, k_v = tpami_coefficients(s_a, s_v, alpha, plus, 4.0)
    assert (k_a.item(), k_v.item()) == pytest.approx(want, abs=ATOL)


def test_tpami_active_after_warmup_inside_the_inclusive_window():
    hp = OGMTPAMIHyper(modulation_starts=0, modulation_ends=60, warmup_epochs=6)
    assert [tpami_active(hp, e) for e in (5, 6, 60, 61)] == [False, True, True, False]


# ----------------------------------------------------------------------------- the official step, restated
def _official_opm_loss(model, batch, q_base, lam, p_exe, seed, step, dims, warm_up):
    """Classifier.forward + Modality_drop.execute_drop + main.py's loss, written as the official
    code (per-sample score loops, python floats), with the draws taken from the run's streams."""
    a, v = "image", "fourier"
    fa, fv = model.encoders[a](batch[a]), model.encoders[v](batch[v])
    w = model.heads.fc.weight.detach()
    b = model.heads.fc.bias.detach()
    t1 = fa.detach() @ w[:, : dims[0]].T + b / 2
    t2 = fv.detach() @ w[:, dims[0] :].T + b / 2
    y = batch["label"]
    p1 = sum(float(torch.softmax(t1, 1)[i, int(y[i])]) for i in range(len(y)))
    p2 = sum(float(torch.softmax(t2, 1)[i, int(y[i])]) for i in range(len(y)))
    r1, r2 = (
        float(torch.tanh(torch.relu(torch.tensor(p1 / p2 - 1)))),
        float(torch.tanh(torch.relu(torch.tensor(p2 / p1 - 1)))),
    )
    q = [
        min(max(q_base * (1 + lam * r1) if r1 > 0 else 0.0, 0.0), 1.0),
        min(max(q_base * (1 + lam * r2) if r2 > 0 else 0.0, 0.0), 1.0),
    ]
    exe = (
        not warm_up
        and float(torch.rand((), generator=stream_generator(seed, "opm/execute", step))) >= 1 - p_exe
    )
    if not exe:
        return F.cross_entropy(model.heads.fc(torch.cat([fa, fv], 1)), y), q, False
    u = torch.rand(len(y), 2, generator=stream_generator(seed, "opm/masks", step))
    mask = torch.stack([(u[:, 0] < 1 - q[0]).float(), (u[:, 1] < 1 - q[1]).float()])  # [2, B]
    theta = (dims[0] * q[0] + dims[1] * q[1]) / (dims[0] + dims[1])
    xa, xv = fa * mask[0][:, None] / (1 - theta), fv * mask[1][:, None] / (1 - theta)
    keep = mask.sum(0) > 0
    out = model.heads.fc(torch.cat([xa, xv], 1))[keep]
    return F.cross_entropy(out, y[keep]), q, True


@pytest.mark.parametrize("epoch,p_exe,executed", [(1, 1.0, True), (0, 1.0, False), (1, 0.0, False)])
def test_opm_step_equals_the_official_computation_on_mfeat(epoch, p_exe, executed):
    meth, model, batch, ctx = mfeat_setup("opm", params={"p_exe": p_exe, "warmup_epochs": 1})
    ctx.optimizers = plain_sgd(model, lr=1.0)
    ctx.epoch, ctx.global_step = epoch, 5
    ref = copy.deepcopy(model)
    dims = [meth.feature_dims[m] for m in meth.modalities]
    loss_ref, q, exe = _official_opm_loss(ref, batch, 0.5, 0.5, p_exe, 0, 5, dims, epoch < 1)
    assert exe == executed
    loss_ref.backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = meth.training_step(model, batch, ctx)
    assert out["loss"].item() == pytest.approx(loss_ref.item(), abs=1e-5)
    if executed:
        assert max(q) > 0 and min(q) == 0  # one modality dropped on this batch
    for (n, p), (_, pr) in zip(model.named_parameters(), ref.named_parameters()):
        delta = before[n] - p.detach()
        want = pr.grad if pr.grad is not None else torch.zeros_like(delta)
        torch.testing.assert_close(delta, want, atol=1e-5, rtol=1e-4, msg=n)


def test_opm_batch_with_no_sample_left_is_skipped_and_trains_nothing(monkeypatch):
    meth, model, batch, ctx = mfeat_setup("opm", params={"p_exe": 1.0, "warmup_epochs": 0})
    monkeypatch.setattr(opm_module, "drop_probabilities", lambda *a: torch.tensor([1.0, 1.0]))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert meth.training_step(model, batch, ctx) == {}
    assert ctx.take_skipped()
    # weights untouched (BN running statistics move with the forward, as in the official loop,
    # which skips after the forward)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    assert not ctx.optimizers.main.state


def test_opm_next_step_uses_the_previous_steps_q_and_keeps_it_in_its_state():
    meth, model, batch, ctx = mfeat_setup(
        "opm", params={"q_timing": "next_step", "warmup_epochs": 0, "p_exe": 1.0}
    )
    ctx.optimizers = plain_sgd(model, lr=0.0)
    meth.training_step(model, batch, ctx)
    assert ctx._step_logs["q_image"] == 0 and ctx._step_logs["q_fourier"] == 0  # first step: q = 0
    q_first = meth.state_dict()["q_prev"]
    assert max(q_first) > 0
    fresh = get_method("opm")(meth.hp, meth.modalities, meth.num_classes, meth.feature_dims)
    fresh.load_state_dict(meth.state_dict())
    assert fresh.state_dict() == meth.state_dict()
    ctx.global_step += 1
    ctx._step_logs.clear()
    meth.training_step(model, batch, ctx)
    assert [ctx._step_logs["q_image"].item(), ctx._step_logs["q_fourier"].item()] == pytest.approx(q_first)


def test_opm_with_ogm_scales_the_dominant_encoder_after_the_drop():
    params = {
        "p_exe": 0.0,
        "warmup_epochs": 0,
        "gradient_modulation": "ogm",
        "modulation": "OGM",
        "param_scope": "non_bias",
        "alpha": 0.8,
    }
    meth, model, batch, ctx = mfeat_setup("opm", params=params)
    ctx.optimizers = plain_sgd(model, lr=1.0)
    ref = copy.deepcopy(model)
    feats = {m: ref.encoders[m](batch[m]) for m in meth.modalities}
    F.cross_entropy(ref.heads(feats)["fusion"], batch["label"]).backward()
    s = confidence_scores(ref.heads(feats), batch["label"], meth.modalities)
    k = dict(zip(meth.modalities, tpami_coefficients(s["image"], s["fourier"], 0.8)))
    assert min(v.item() for v in k.values()) < 1
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    meth.training_step(model, batch, ctx)
    for (n, p), (_, pr) in zip(model.named_parameters(), ref.named_parameters()):
        m = n.split(".")[1] if n.startswith("encoders.") and p.dim() > 1 else None
        scale = k[m].item() if m else 1.0
        torch.testing.assert_close(before[n] - p.detach(), scale * pr.grad, atol=1e-5, rtol=1e-4, msg=n)


@pytest.mark.parametrize("epoch,modulated", [(0, False), (1, True)])
def test_ogm_tpami_step_scales_only_after_the_warmup(epoch, modulated):
    meth, model, batch, ctx = mfeat_setup(
        "ogm_tpami", params={"modulation": "OGM", "param_scope": "non_bias"}
    )
    ctx.optimizers = plain_sgd(model, lr=1.0)
    ctx.epoch = epoch  # mfeat: warmup_epochs = 1
    ref = copy.deepcopy(model)
    feats = {m: ref.encoders[m](batch[m]) for m in meth.modalities}
    logits = ref.heads(feats)
    F.cross_entropy(logits["fusion"], batch["label"]).backward()
    s = confidence_scores(logits, batch["label"], meth.modalities)
    k = dict(zip(meth.modalities, tpami_coefficients(s["image"], s["fourier"], 0.8)))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    meth.training_step(model, batch, ctx)
    for (n, p), (_, pr) in zip(model.named_parameters(), ref.named_parameters()):
        m = n.split(".")[1] if n.startswith("encoders.") and p.dim() > 1 else None
        scale = k[m].item() if (m and modulated) else 1.0
        torch.testing.assert_close(before[n] - p.detach(), scale * pr.grad, atol=1e-5, rtol=1e-4, msg=n)


def test_ogm_tpami_ge_noise_comes_from_its_stream():
    outs = []
    for _ in range(2):
        meth, model, batch, ctx = mfeat_setup("ogm_tpami", params={"param_scope": "non_bias"})
        ctx.epoch, ctx.global_step = 1, 3
        torch.manual_seed(99)  # the global stream must not matter
        meth.training_step(model, batch, ctx)
        outs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        torch.manual_seed(7)
    assert torch.equal(outs[0], outs[1])


# ----------------------------------------------------------------------------- refusals, settings, harness
@pytest.mark.parametrize("name", ["opm", "ogm_tpami"])
def test_refuses_three_modalities_in_one_line(name):
    with pytest.raises(ConfigError, match=f"{name} supports exactly 2 modalities; mfeat3 has 3: "):
        resolve_config("mfeat3", name)
    result = CliRunner().invoke(cli, ["run", "-m", name, "-d", "mfeat3", "--set", "epochs=1"])
    assert result.exit_code == 2, result.output
    assert "exactly 2 modalities" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("key,value", [("q_timing", "later"), ("gradient_modulation", "pmr")])
def test_opm_rejects_unknown_flag_values(key, value):
    with pytest.raises(ConfigError, match=key):
        resolve_config("mfeat", "opm", {f"method.{key}": value})


@pytest.mark.parametrize("name", ["opm", "ogm_tpami"])
def test_settings_have_sources_and_the_official_ks_setup(name):
    check_method_toml(name)
    cfg = resolve_config("kinetics_sounds", name, {"protocol": "official"})
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.weight_decay) == ("adamw", 5e-5, 0.01)
    assert (cfg.train.step_size, cfg.train.gamma, cfg.train.batch_size, cfg.train.epochs) == (
        40,
        0.1,
        32,
        100,
    )
    assert cfg.method_params["warmup_epochs"] == 6


@pytest.mark.slow
def test_opm_runs_through_the_cli_and_logs_its_drops(tmp_path):
    run, history = cli_short_run(tmp_path, "opm", sets=["batch_size=8"])  # 13 batches an epoch
    assert json.loads((run / "result.json").read_text())["status"] == "finished"
    d0, d1 = history[0]["diagnostics"], history[1]["diagnostics"]
    assert d0["executed"] == 0 and d0["theta"] == 0  # warm-up epoch (mfeat: 1)
    assert 0 < d1["executed"] < 1 and d1["theta"] > 0
    assert set(history[0]["test"]) == {"fusion", "image", "fourier"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["opm", "ogm_tpami"])
def test_conformance_kit(name):
    report = check_method(get_method(name))
    assert report.passed["mfeat"] == ["losses", "predict", "encoders", "state", "determinism", "resume"]
    assert "exactly 2 modalities" in report.refused["mfeat3"]


@pytest.mark.slow
def test_opm_next_step_resume_equals_an_uninterrupted_run(tmp_path):
    overrides = {
        "epochs": 3,
        "data.limit_train_per_class": 10,
        "method.q_timing": "next_step",
        "method.p_exe": 0.5,
    }
    assert_resume_equal(tmp_path, "mfeat", "opm", overrides, [1, 1])


@pytest.mark.parametrize(
    "name,text",
    [
        (
            "opm",
            'On-the-fly Prediction Modulation -- "On-the-fly Modulation for Balanced Multimodal Learning", IEEE TPAMI 2024',
        ),
        ("ogm_tpami", 'journal version of On-the-fly Gradient Modulation -- "On-the-fly Modulation'),
        ("mmcosine", 'Multi-Modal Cosine loss -- "MMCosine: Multi-Modal Cosine Loss'),
        ("cml", 'Calibrating Multimodal Learning -- "Calibrating Multimodal Learning", ICML 2023'),
    ],
)
def test_list_methods_names_the_paper(name, text):
    out = CliRunner().invoke(cli, ["list", "methods"]).output
    line = next(ln for ln in out.splitlines() if ln.startswith(f"{name} "))
    assert text in line, line
