"""ReconBoost (specs/methods/reconboost.md): the numeric cases of §8, the epoch mapping and
selectable epochs, fresh optimisers per phase, runs on two and three modalities, and resume in
the middle of a stage (phase 1 and phase 2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _method_runs import assert_resume_equal, check_method_toml, mfeat_setup
from click.testing import CliRunner

from mmbench.benchmark.config import TrainConfig
from mmbench.cli import cli
from mmbench.methods.reconboost import ReconBoost, ReconBoostHyper, boosting_loss

ATOL = 1e-6
F_M = [[2.0, 1.0, 0.0]]
F_OTHERS = [[0.0, 1.0, 0.0]]


def _loss_and_grad(form, others=F_OTHERS):
    f = torch.tensor(F_M, dtype=torch.float64, requires_grad=True)
    o = None if others is None else torch.tensor(others, dtype=torch.float64)
    loss = boosting_loss(f, o, torch.tensor([0]), 5.0, 1.0, form)
    (g,) = torch.autograd.grad(loss, f)
    return loss.item(), g[0].tolist()


def test_t1_code_loss_keeps_only_the_true_class_residual():
    f = torch.tensor(F_M, dtype=torch.float64)
    assert torch.softmax(f, 1)[0].tolist() == pytest.approx([0.665241, 0.244728, 0.090031], abs=ATOL)
    assert torch.softmax(torch.tensor(F_OTHERS), 1)[0].tolist() == pytest.approx([0.211942, 0.576117, 0.211942], abs=ATOL)
    loss, grad = _loss_and_grad("true_class")
    assert loss == pytest.approx(0.650547, abs=ATOL)
    assert grad == pytest.approx([-0.534282, 0.390591, 0.143691], abs=ATOL)


def test_t1b_full_kl_is_the_paper_objective_and_differs():
    loss, grad = _loss_and_grad("full_kl")
    assert loss == pytest.approx(0.321150, abs=ATOL)
    assert grad == pytest.approx([-0.425419, 0.311006, 0.114413], abs=ATOL)
    ce = F.cross_entropy(torch.tensor(F_M, dtype=torch.float64), torch.tensor([0])).item()
    assert ce == pytest.approx(0.407606, abs=ATOL)
    assert (ce - loss) / 0.2 == pytest.approx(0.432278, abs=ATOL)  # KL(q || p)
    assert loss != pytest.approx(_loss_and_grad("true_class")[0], abs=1e-3)


def test_empty_ensemble_means_q_true_class_is_one():
    loss, _ = _loss_and_grad("true_class", others=None)
    assert loss == pytest.approx(0.543475, abs=ATOL)


def test_t2_memory_term_adds_no_gradient():
    f = torch.tensor(F_M, dtype=torch.float64, requires_grad=True)
    prev = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    y = torch.tensor([0])
    boost = boosting_loss(f, torch.tensor(F_OTHERS, dtype=torch.float64), y)
    ga = F.mse_loss(f.detach().softmax(1), prev.detach().softmax(1))
    (g1,) = torch.autograd.grad(boost + 0.5 * ga, f)
    (g2,) = torch.autograd.grad(boosting_loss(f, torch.tensor(F_OTHERS, dtype=torch.float64), y), f)
    assert ga.item() > 0
    torch.testing.assert_close(g1, g2)


def test_t3_ensemble_scale_beta_changes_scores_not_argmax():
    beta = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    fa, fv = torch.tensor([[1.0, 0.0, 2.0]], dtype=torch.float64), torch.tensor([[0.0, 3.0, 0.0]], dtype=torch.float64)
    logits = beta * (fa + fv)
    assert logits.argmax(1).item() == 1
    ce = F.cross_entropy(logits, torch.tensor([2]))
    (g,) = torch.autograd.grad(ce, beta)
    assert ce.item() == pytest.approx(1.407606, abs=ATOL)
    assert g.item() == pytest.approx(0.575210, abs=ATOL)


def _method(modalities=("audio", "video"), **hyper):
    return ReconBoost(ReconBoostHyper(**hyper), modalities, 3, {m: 4 for m in modalities})


def test_epoch_mapping_of_stages_phases_and_modalities():
    rb = _method()
    expect = {0: (0, 1, "audio"), 3: (0, 1, "audio"), 4: (0, 2, "audio"), 7: (0, 2, "audio"),
              8: (1, 1, "video"), 11: (1, 1, "video"), 12: (1, 2, "video"), 15: (1, 2, "video"),
              16: (2, 1, "audio")}
    for e, (s, phase, m) in expect.items():
        assert rb.position(e)[:3] == (s, phase, m), e
    three = _method(("rgb", "of", "depth"), epochs_per_stage=1, correct_epochs=1)
    assert [three.position(e)[2] for e in range(0, 8, 2)] == ["rgb", "of", "depth", "rgb"]


def test_only_stage_ends_from_stage_three_are_selectable_capped_for_short_budgets():
    rb = _method()
    assert [e for e in range(200) if rb.is_selectable(e, 200)] == list(range(31, 200, 8))
    assert [e for e in range(16) if rb.is_selectable(e, 16)] == [15]  # 2 stages: capped at s = 1
    assert [e for e in range(20) if rb.is_selectable(e, 20)] == [15]  # trailing partial stage: never


def test_stage_lr_decays_every_thirty_stages_and_follows_the_shared_schedule():
    rb = _method()
    constant = TrainConfig(lr=0.01, schedule="constant")
    assert rb.stage_lr(8 * 29, constant) == pytest.approx(0.01)
    assert rb.stage_lr(8 * 30, constant) == pytest.approx(0.001)
    assert rb.stage_lr(8 * 60 + 5, constant) == pytest.approx(1e-4)
    step = TrainConfig(lr=0.01, schedule="step", step_size=14, gamma=0.1, step_at="epoch_start")
    per_epoch = _method(shared_lr_step="epoch")
    assert per_epoch.stage_lr(12, step) == pytest.approx(0.01) and per_epoch.stage_lr(13, step) == pytest.approx(0.001)


def test_shared_step_schedule_changes_the_lr_only_between_stages():
    """Default ``shared_lr_step = "stage"``: the StepLR factor of the stage's first epoch, so the
    LR is constant inside a stage as in the official code (train.py:445-451)."""
    rb = _method()
    step = TrainConfig(lr=0.01, schedule="step", step_size=14, gamma=0.1, step_at="epoch_start")
    assert [rb.stage_lr(e, step) for e in range(8, 16)] == pytest.approx([0.01] * 8)  # stage 1 (8..15)
    assert [rb.stage_lr(e, step) for e in range(16, 24)] == pytest.approx([0.001] * 8)  # stage 2: 17 >= 14


def test_fresh_optimiser_per_phase_over_the_phase_parameters():
    rb, model, batch, ctx = mfeat_setup(
        "reconboost", params={"epochs_per_stage": 2, "correct_epochs": 1}
    )
    seen, momentum_at_start = [], []
    for epoch in range(6):
        ctx.start_epoch(epoch)
        rb.on_epoch_start(ctx)
        seen.append(ctx.optimizers)
        momentum_at_start.append(len(ctx.optimizers.main.state))
        rb.training_step(model, batch, ctx)
        rb.on_epoch_end(ctx)
    # new optimiser at epochs 0 (phase 1), 2 (phase 2), 3 (stage 1 phase 1), 5 (phase 2)
    assert [seen[e] is not seen[e - 1] for e in range(1, 6)] == [False, True, True, False, True]
    def ids(opt):
        return {id(p) for g in opt.main.param_groups for p in g["params"]}

    def enc(m):
        return {id(p) for p in model.encoders[m].parameters()}

    beta = id(model.heads.beta)
    assert enc("image") <= ids(seen[0]) and not enc("fourier") & ids(seen[0]) and beta not in ids(seen[0])
    assert enc("image") <= ids(seen[2]) and not enc("fourier") & ids(seen[2]) and beta in ids(seen[2])
    assert enc("fourier") <= ids(seen[3]) and not enc("image") & ids(seen[3])
    assert enc("image") | enc("fourier") | {beta} <= ids(seen[5])
    # fresh at each phase start (no momentum carried over); kept inside a phase
    assert [n == 0 for n in momentum_at_start] == [True, False, True, True, False, True]
    assert rb.ensemble == model.heads.ensemble() == ["image", "fourier"]


def test_phase_one_leaves_other_encoders_and_beta_untouched():
    rb, model, batch, ctx = mfeat_setup("reconboost", params={"epochs_per_stage": 1, "correct_epochs": 1})
    rb.ensemble = ["image", "fourier"]
    ctx.start_epoch(2)  # stage 1, phase 1: fourier
    rb.on_epoch_start(ctx)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = rb.training_step(model, batch, ctx)
    after = dict(model.named_parameters())
    for n, p in before.items():
        changed = not torch.equal(p, after[n].detach())
        if n.startswith("encoders.image") or n == "heads.beta":
            assert not changed, n
    assert not torch.equal(before["heads.head.0.weight"], after["heads.head.0.weight"].detach())
    assert "loss_ga" in out and 0 < ctx.collect_diagnostics()["q_true"] < 1


@pytest.mark.slow
def test_resume_in_the_middle_of_both_phases_equals_an_uninterrupted_run(tmp_path):
    overrides = {"epochs": 6, "data.preset": "smoke", "method.epochs_per_stage": 2, "method.correct_epochs": 1,
                 "method.min_stage_for_selection": 0}
    # stops after epoch 0 (mid phase 1 of stage 0) and after epoch 4 (mid phase 1 of stage 1,
    # after phase 2 with its own optimiser); a stop after epoch 2 resumes at a phase start
    hist = assert_resume_equal(tmp_path, "mfeat", "reconboost", overrides, [1, 1, 2])
    assert [h["diagnostics"]["phase"] for h in hist] == [1, 1, 2, 1, 1, 2]
    assert [h["selectable"] for h in hist] == [False, False, True, False, False, True]
    assert hist[-1]["diagnostics"]["beta"] != 1.0


@pytest.mark.slow
def test_resume_in_the_middle_of_a_correction_phase(tmp_path):
    overrides = {"epochs": 4, "data.preset": "smoke", "method.epochs_per_stage": 1, "method.correct_epochs": 3}
    assert_resume_equal(tmp_path, "mfeat", "reconboost", overrides, [2])  # stop inside phase 2


def test_cli_run_cycles_three_modalities_on_mfeat3(tmp_path):
    res = CliRunner().invoke(
        cli,
        ["run", "-m", "reconboost", "-d", "mfeat3", "--results", str(tmp_path), "--device", "cpu", "--no-progress",
         "--set", "epochs=6", "--set", "data.preset=smoke", "--set", "method.epochs_per_stage=1",
         "--set", "method.correct_epochs=1"],
    )
    assert res.exit_code == 0, res.output
    run = next(tmp_path.glob("mfeat3/reconboost-*/seed-0"))
    import json

    hist = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["diagnostics"]["modality"] for h in hist] == ["image", "image", "fourier", "fourier", "morph", "morph"]
    assert hist[-1]["diagnostics"]["ensemble"] == ["image", "fourier", "morph"]
    assert set(hist[-1]["test"]) == {"fusion", "image", "fourier", "morph"}


def test_reconboost_config_values_are_hyper_parameters_with_sources():
    check_method_toml("reconboost")


def _image_buffers(model):
    return {n: b.clone() for n, b in model.encoders["image"].named_buffers() if "running" in n}


@pytest.mark.parametrize(("aux", "ga", "moves"), [("train", True, True), ("eval", False, False)])
def test_aux_and_memory_forwards_move_other_learners_bn_statistics_only_in_train_mode(aux, ga, moves):
    rb, model, batch, ctx = mfeat_setup(
        "reconboost", params={"epochs_per_stage": 1, "correct_epochs": 1, "aux_forward_mode": aux, "ga_forward": ga}
    )
    rb.ensemble = ["image", "fourier"]
    ctx.start_epoch(2)  # stage 1, phase 1: fourier learns; image gives q (and is f_prev)
    rb.on_epoch_start(ctx)
    before = _image_buffers(model)
    rb.training_step(model, batch, ctx)
    after = _image_buffers(model)
    assert any(not torch.equal(before[n], after[n]) for n in before) == moves
    assert model.encoders["image"].training


def test_fixed_beta_stays_out_of_the_correction_optimiser():
    rb, model, batch, ctx = mfeat_setup("reconboost", params={"epochs_per_stage": 1, "correct_epochs": 1, "learn_beta": False})
    rb.ensemble = ["image"]
    ctx.start_epoch(1)  # stage 0, phase 2
    rb.on_epoch_start(ctx)
    rb.training_step(model, batch, ctx)
    assert model.heads.beta.item() == 1.0 and not model.heads.beta.requires_grad
    assert all(p is not model.heads.beta for g in ctx.optimizers.main.param_groups for p in g["params"])
