"""pmr: every numeric case of specs/methods/pmr.md §8, prototype timing (no EMA after epoch 0),
empty classes, frozen BN statistics, the loss on real mfeat batches, the 2-modality refusal, the
CLI end to end and resume equality."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from _method_runs import cli_short_run, cpu_context, resumed_checkpoints
from click.testing import CliRunner

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.loaders import EpochLoader
from mmbench.benchmark.registry import get_dataset, get_method
from mmbench.cli import cli
from mmbench.errors import ConfigError
from mmbench.methods.pmr import (
    _PROTO_EPOCH_OFFSET,
    class_means,
    compute_prototypes,
    ema,
    mean_entropy,
    prototype_logits,
    rebalance_coefficients,
    true_class_prob_sum,
)

ATOL = 1e-6
QUICK = {"epochs": 3, "data.limit_train_per_class": 10}

PHI_A = torch.tensor([[1, 0], [0.8, 0.2], [0, 1], [0.2, 0.9]])
PHI_V = torch.tensor([[0.6, 0.4], [0.5, 0.5], [0.4, 0.6], [0.5, 0.45]])
C_A = torch.tensor([[0.9, 0.1], [0.1, 0.95]])
C_V = torch.tensor([[0.55, 0.45], [0.45, 0.525]])
Y = torch.tensor([0, 0, 1, 1])


# ----------------------------------------------------------------------------- spec §8 numbers
def test_prototype_scores_ratio_and_slower_modality_match_spec():
    q_a, q_v = prototype_logits(PHI_A, C_A), prototype_logits(PHI_V, C_V)
    s_a, s_v = true_class_prob_sum(q_a, Y), true_class_prob_sum(q_v, Y)
    assert s_a.item() == pytest.approx(2.953263, abs=ATOL)
    assert s_v.item() == pytest.approx(2.047821, abs=ATOL)
    beta_a, beta_v, rho = rebalance_coefficients(s_a, s_v, alpha=1.0)
    assert rho.item() == pytest.approx(1.442149, abs=ATOL)
    assert (beta_a.item(), beta_v.item()) == (0.0, 1.0)


def test_prototypical_cross_entropy_and_added_loss_match_spec():
    q_a, q_v = prototype_logits(PHI_A, C_A), prototype_logits(PHI_V, C_V)
    pce_a, pce_v = F.cross_entropy(q_a, Y), F.cross_entropy(q_v, Y)
    assert pce_a.item() == pytest.approx(0.303925, abs=ATOL)
    assert pce_v.item() == pytest.approx(0.670205, abs=ATOL)
    beta_a, beta_v, _ = rebalance_coefficients(true_class_prob_sum(q_a, Y), true_class_prob_sum(q_v, Y), 1.0)
    assert (beta_a * pce_a + beta_v * pce_v).item() == pytest.approx(0.670205, abs=ATOL)


def test_distances_are_euclidean_not_squared():
    q = prototype_logits(torch.tensor([[3.0, 4.0]]), torch.zeros(1, 2))
    assert q.item() == pytest.approx(-5.0, abs=ATOL)


def test_visual_prototype_entropy_matches_spec():
    assert mean_entropy(prototype_logits(PHI_V, C_V)).item() == pytest.approx(0.692142, abs=ATOL)


def test_rebalance_gives_alpha_to_audio_when_visual_leads_and_nothing_at_a_tie():
    b_a, b_v, _ = rebalance_coefficients(torch.tensor(1.0), torch.tensor(2.0), 2.0)
    assert (b_a.item(), b_v.item()) == (2.0, 0.0)
    b_a, b_v, _ = rebalance_coefficients(torch.tensor(1.5), torch.tensor(1.5), 2.0)
    assert (b_a.item(), b_v.item()) == (0.0, 0.0)


def test_prototype_ema_matches_spec():
    out = ema(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0]), 0.2)
    torch.testing.assert_close(out, torch.tensor([0.2, 0.8]), atol=ATOL, rtol=0)


def test_empty_class_keeps_its_previous_prototype():
    sums = torch.tensor([[2.0, 4.0], [0.0, 0.0]])
    counts = torch.tensor([2, 0])
    prev = torch.tensor([[9.0, 9.0], [7.0, 5.0]])
    out = class_means(sums, counts, prev)
    torch.testing.assert_close(out, torch.tensor([[1.0, 2.0], [7.0, 5.0]]))
    assert torch.isfinite(class_means(sums, counts, None)).all()


# ----------------------------------------------------------------------------- real data
def _setup(params=None, limit=10):
    cfg = resolve_config("mfeat", "joint", {"data.limit_train_per_class": limit})
    spec = get_dataset("mfeat")
    factories = spec.backbones(cfg.data)
    torch.manual_seed(0)
    encoders = torch.nn.ModuleDict({m: factories[m][0]() for m in spec.modalities})
    dims = {m: factories[m][1] for m in spec.modalities}
    cls = get_method("pmr")
    method = cls(cls.make_hyper(params or {}), spec.modalities, spec.num_classes, dims)
    model = torch.nn.Module()
    model.encoders, model.heads = encoders, method.build_heads(dims, spec.num_classes)
    data = spec.build("train", None, True, cfg.data)
    loader = EpochLoader(data, 16, True, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    ctx = cpu_context(model, spec, opt, epochs=5, train_loader=loader)
    return method, model, ctx, data


def _fresh(method, model, ctx, epoch, previous):
    ctx.train_loader.set_epoch(_PROTO_EPOCH_OFFSET + epoch)
    new, _ = compute_prototypes(
        method, model, ctx.train_loader, 10, method.hp.proto_fraction, ctx.device, ctx.autocast, previous
    )
    return new


def test_prototypes_are_replaced_after_epoch_zero_and_ema_blended_after():
    method, model, ctx, _ = _setup({"momentum_coef": 0.5})
    ctx.start_epoch(0)
    method.on_epoch_start(ctx)
    initial = copy.deepcopy(method.protos)
    with torch.no_grad():  # move the encoders so that fresh prototypes differ from the initial ones
        for p in model.encoders.parameters():
            p.add_(0.05 * torch.randn_like(p))
    method.on_epoch_end(ctx)
    fresh0 = _fresh(method, model, ctx, 0, initial)
    for m in method.protos:
        assert not torch.allclose(method.protos[m], initial[m])
        torch.testing.assert_close(method.protos[m], fresh0[m])  # no EMA against the random-init ones
    old = copy.deepcopy(method.protos)
    with torch.no_grad():
        for p in model.encoders.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ctx.start_epoch(1)
    method.on_epoch_start(ctx)  # after_epoch timing: nothing at epoch start after epoch 0
    for m in old:
        assert torch.equal(method.protos[m], old[m])
    method.on_epoch_end(ctx)
    fresh1 = _fresh(method, model, ctx, 1, old)
    for m in old:
        torch.testing.assert_close(method.protos[m], 0.5 * fresh1[m] + 0.5 * old[m])


def test_prototypes_use_a_tenth_of_the_batches_in_eval_mode_without_moving_bn():
    method, model, ctx, _ = _setup(limit=20)  # 200 samples / 16 = 13 batches -> 1 batch, extended
    bn = [mod for mod in model.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    stats = [(b.running_mean.clone(), b.running_var.clone()) for b in bn]
    ctx.start_epoch(0)
    method.on_epoch_start(ctx)
    assert model.training
    for b, (mean, var) in zip(bn, stats):
        assert torch.equal(b.running_mean, mean) and torch.equal(b.running_var, var)
    counts = method.epoch_diagnostics()["proto_class_counts"]
    assert min(counts) >= 1  # the first computation extends until every class is present
    assert sum(counts) >= 16
    assert all(not p.requires_grad for p in method.protos.values())


def test_first_prototype_pass_extends_past_the_budget_until_every_class_is_seen():
    method, model, ctx, data = _setup()
    # a loader whose first batches hold only classes 0..4
    order = torch.argsort(
        data.labels if torch.is_tensor(data.labels) else torch.as_tensor(data.labels), stable=True
    )

    class Ordered:
        def __len__(self):
            return math.ceil(len(order) / 8)

        def __iter__(self):
            for i in range(0, len(order), 8):
                yield data.batch(order[i : i + 8])

    protos, counts = compute_prototypes(
        method, model, Ordered(), 10, 0.1, ctx.device, ctx.autocast, extend=True
    )
    assert (counts > 0).all()
    assert all(torch.isfinite(p).all() for p in protos.values())
    _, counts = compute_prototypes(method, model, Ordered(), 10, 0.1, ctx.device, ctx.autocast, extend=False)
    assert (counts == 0).any()  # without extension the budget (1 batch) misses classes


def test_pmr_loss_adds_alpha_times_the_slower_modalitys_pce_inside_the_window():
    method, model, ctx, data = _setup({"alpha": 2.0, "modulation_ends": 0})
    ctx.start_epoch(0)
    method.on_epoch_start(ctx)
    batch = data.batch(torch.arange(32))
    a, v = method.modalities
    out = method.training_step(model, batch, ctx)
    slower = out[f"pce_{v}"] if ctx.collect_diagnostics()["ratio_proto"] > 1 else out[f"pce_{a}"]
    assert out["loss"].item() == pytest.approx(out["loss_fused"].item() + 2.0 * slower.item(), abs=1e-5)
    ctx.start_epoch(1)  # outside the window: plain CE
    out = method.training_step(model, batch, ctx)
    assert out["loss"].item() == pytest.approx(out["loss_fused"].item(), abs=1e-6)


def test_entropy_regularisation_is_off_by_default_and_subtracts_dominant_entropy_when_on():
    method, model, ctx, data = _setup({"per_weight": 0.5, "per_epochs": 1, "modulation_ends": -1})
    ctx.start_epoch(0)
    method.on_epoch_start(ctx)
    batch = data.batch(torch.arange(32))
    with torch.no_grad():
        feats = method.encode(model, batch)
        q = {m: prototype_logits(feats[m], method.protos[m]) for m in method.modalities}
        a, v = method.modalities
        rho = true_class_prob_sum(q[a], batch["label"]) / true_class_prob_sum(q[v], batch["label"])
        dom = a if rho > 1 else v
        ent = mean_entropy(q[dom]).item()
    out = method.training_step(model, batch, ctx)
    assert out["loss"].item() == pytest.approx(out["loss_fused"].item() - 0.5 * ent, abs=1e-5)
    assert get_method("pmr").Hyper().per_weight == 0.0


def test_pmr_refuses_three_modalities():
    with pytest.raises(ConfigError, match="at most 2 modalities"):
        resolve_config("mfeat3", "pmr")
    result = CliRunner().invoke(cli, ["run", "-m", "pmr", "-d", "mfeat3"])
    assert result.exit_code != 0 and "at most 2 modalities" in result.output


def test_pmr_runs_end_to_end_through_the_cli(tmp_path):
    _, history = cli_short_run(tmp_path, "pmr")
    assert [h["diagnostics"]["proto_updates"] for h in history] == [2, 3]
    assert all({"beta_image", "beta_fourier", "ratio_proto"} <= set(h["diagnostics"]) for h in history)
    assert 0 <= history[0]["diagnostics"]["proto_acc_image"] <= 1
    assert set(history[-1]["test"]) == {"fusion", "image", "fourier"}


@pytest.mark.parametrize("timing", ["after_epoch", "epoch_start"])
def test_pmr_resume_equals_uninterrupted_run(tmp_path, timing):
    cfg = resolve_config(
        "mfeat", "pmr", {**QUICK, "method.momentum_coef": 0.3, "method.proto_timing": timing}
    )
    ck = resumed_checkpoints(tmp_path, cfg, stop=1)
    for m, p in ck[0]["method"]["protos"].items():
        assert torch.equal(p, ck[1]["method"]["protos"][m])
