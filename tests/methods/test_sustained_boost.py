"""sustained_boost numerics: every numeric case of specs/methods/sustained_boost.md §8, the
training step against a replay of the official loop, and the heads/optimiser contract."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmbench.benchmark.config import TrainConfig
from mmbench.benchmark.context import Context
from mmbench.benchmark.trainer import MultimodalModel
from mmbench.methods.sustained_boost import (
    SustainedBoost,
    SustainedBoostHyper,
    aca_many,
    aca_two,
    check_epochs,
    confidence,
    fuse,
    running_ratio,
    sub_loss,
    weight_net_loss,
    weight_targets,
)

ATOL = 1e-6
Y0 = torch.tensor([0])


def soft_ce(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """l(z, q) = -sum_k q_k log softmax(z)_k, batch mean (linear in q)."""
    return -(q * z.log_softmax(1)).sum(1).mean()


def t(*rows) -> torch.Tensor:
    return torch.tensor([list(rows)], dtype=torch.float64)


# ---------------------------------------------------------------------------- §8 loss cases
def test_residual_label_identity_matches_spec_case():
    f_prev, z_n = t(1, 0, 0), t(0.5, 1, 0)
    y = F.one_hot(Y0, 3).double()
    P = f_prev.softmax(1)
    assert torch.allclose(P, t(0.576117, 0.211942, 0.211942), atol=ATOL)
    assert 1 - 0.2 * P[0, 0].item() == pytest.approx(0.884777, abs=ATOL)
    l_y = soft_ce(z_n, y)
    assert l_y.item() == pytest.approx(1.180270, abs=ATOL)
    via_linearity = l_y - 0.2 * soft_ce(z_n, y * P)  # the official code's form
    via_target = soft_ce(z_n, y - 0.2 * y * P)  # yhat, not renormalised
    assert via_linearity.item() == pytest.approx(1.044275, abs=ATOL)
    assert via_target.item() == pytest.approx(1.044275, abs=ATOL)
    # sub_loss with n = 2, w = 1 and only the residual term is exactly this eps
    loss, parts, _ = sub_loss(torch.stack([f_prev, z_n]), Y0, 1.0, 0.2, terms=("residual",))
    assert parts["eps"].item() == pytest.approx(1.044275, abs=ATOL)
    assert loss.item() == pytest.approx(1.044275, abs=ATOL)


def _three_classifiers():
    return torch.stack([t(1, 0, 0), t(0, 0.5, 0), t(0.5, 1, 0)])


def test_full_loss_with_three_classifiers_matches_spec_case():
    z = _three_classifiers()
    loss, parts, f_n = sub_loss(z, Y0, 0.5, 0.2)
    assert torch.allclose(f_n, t(1.25, 0.75, 0), atol=ATOL)
    f_prev = z[0] + 0.5 * z[1]
    assert torch.allclose(f_prev, t(1, 0.25, 0), atol=ATOL)
    p_y = f_prev.softmax(1)[0, 0].item()
    assert p_y == pytest.approx(0.543406, abs=ATOL)
    assert 1 - 0.2 * p_y == pytest.approx(0.891319, abs=ATOL)
    assert parts["eps"].item() == pytest.approx(0.997687, abs=ATOL)
    assert parts["eps_all"].item() == pytest.approx(0.638182, abs=ATOL)
    assert parts["eps_pre"].item() == pytest.approx(0.609899, abs=ATOL)
    assert loss.item() == pytest.approx(2.245768, abs=ATOL)
    assert confidence(f_n, Y0).item() == pytest.approx(0.528252, abs=ATOL)


def test_full_loss_without_weight_network_matches_spec_case():
    loss, _, _ = sub_loss(_three_classifiers(), Y0, 1.0, 0.2)
    assert loss.item() == pytest.approx(2.539899, abs=ATOL)


@pytest.mark.parametrize(
    "terms, expected",
    [
        (("residual",), 0.997687),
        (("ensemble",), 0.638182),
        (("previous",), 0.609899),
        (("residual", "ensemble"), 0.997687 + 0.638182),
        (("ensemble", "previous"), 0.638182 + 0.609899),
    ],
)
def test_loss_terms_ablation_sums_only_the_chosen_errors(terms, expected):
    loss, parts, _ = sub_loss(_three_classifiers(), Y0, 0.5, 0.2, terms=terms)
    assert set(parts) == {{"residual": "eps", "ensemble": "eps_all", "previous": "eps_pre"}[k] for k in terms}
    assert loss.item() == pytest.approx(expected, abs=2e-6)


def test_single_classifier_loss_is_plain_cross_entropy_whatever_the_terms():
    z = torch.stack([t(0.5, 1, 0)])
    for terms in (("residual",), ("ensemble", "previous")):
        loss, parts, f_n = sub_loss(z, Y0, 0.5, 0.2, terms=terms)
        assert parts == {}
        assert loss.item() == pytest.approx(1.180270, abs=ATOL)
        assert torch.equal(f_n, z[0])


def test_sum_probs_residual_target_uses_each_previous_classifier_and_is_not_clamped():
    z = _three_classifiers()
    _, parts, _ = sub_loss(z, Y0, 0.5, 0.2, terms=("residual",), residual_target="sum_probs")
    p_sum = z[0].softmax(1)[0, 0] + z[1].softmax(1)[0, 0]
    expected = (1 - 0.2 * p_sum) * F.cross_entropy(0.5 * z[2], Y0)
    assert parts["eps"].item() == pytest.approx(expected.item(), abs=ATOL)
    # lambda (n - 1) > 1: the target weight goes negative and is kept (v2 text, no clamp)
    _, parts, _ = sub_loss(z, Y0, 0.5, 1.5, terms=("residual",), residual_target="sum_probs")
    assert parts["eps"].item() < 0


def test_residual_probability_is_detached():
    z = _three_classifiers().clone().requires_grad_(True)
    _, parts, _ = sub_loss(z, Y0, 0.5, 0.2, terms=("residual",))
    parts["eps"].backward()
    # eps depends on z_1, z_2 only through the detached P: no gradient reaches them
    assert torch.count_nonzero(z.grad[:2]) == 0
    assert torch.count_nonzero(z.grad[2]) > 0


# ---------------------------------------------------------------------------- §8 ACA and schedule
@pytest.mark.parametrize(
    "S, rho, expected",
    [((30.5, 30), 1.016667, 1), ((30.2, 30), 1.006667, None), ((29, 30), 0.966667, 0)],
)
def test_aca_two_modalities_matches_spec_cases(S, rho, expected):
    assert S[0] / S[1] == pytest.approx(rho, abs=ATOL)
    assert aca_two(S[0], S[1], sigma=1.0, tau=0.01) == expected


def test_aca_difference_rule_uses_mean_scores():
    # s^a - sigma s^v = (30.5 - 30) / N: above tau with N = 10, inside the dead zone with N = 100
    assert aca_two(30.5, 30, 1.0, 0.01, rule="difference", n_train=10) == 1
    assert aca_two(30.5, 30, 1.0, 0.01, rule="difference", n_train=100) is None
    assert aca_two(29, 30, 1.0, 0.01, rule="difference", n_train=10) == 0


@pytest.mark.parametrize(
    "S, rho, added",
    [((10, 30, 25), (0.181818, 0.857143, 0.625), [0]), ((10, 12, 30), (0.238095, 0.3, 1.363636), [0, 1])],
)
def test_aca_three_modalities_matches_spec_cases(S, rho, added):
    got = [s / (sum(S) - s) for s in S]
    assert got == pytest.approx(list(rho), abs=ATOL)
    assert aca_many(list(S), rho_min=0.4) == added


def test_check_epochs_match_spec_cases():
    assert check_epochs(200, 20) == [0] + list(range(19, 200, 20))
    assert len(check_epochs(200, 20)) == 11
    assert check_epochs(200) == check_epochs(200, 20)  # auto t_N = epochs // 10
    assert check_epochs(100) == [0] + list(range(9, 100, 10))
    assert check_epochs(8) == list(range(8))
    assert check_epochs(15) == list(range(15))
    assert check_epochs(20, first_check=False) == list(range(1, 20, 2))


# ---------------------------------------------------------------------------- §8 running ratio, g_w, fusion
def test_running_ratio_two_modalities_matches_spec_case():
    S = torch.zeros(2, dtype=torch.float64)
    expected = [(1.25, 0.8, 0.0), (1.107143, 0.903226, 0.0), (0.910394, 1.098425, 1.0)]
    for step, (tmp, (ra, rv, ca)) in enumerate(zip([(40, 32), (42, 40), (30, 45)], expected)):
        tmp = torch.tensor(tmp, dtype=torch.float64)
        S = S + tmp
        r = running_ratio(tmp, S, step)
        assert r.tolist() == pytest.approx([ra, rv], abs=ATOL)
        c = weight_targets(r, threshold=1.0)
        assert c.tolist() == [ca, 1.0 - ca]


def test_running_ratio_three_modalities_matches_spec_case():
    S = torch.zeros(3, dtype=torch.float64)
    cases = [
        ((20, 30, 25), (0.363636, 0.666667, 0.5), [1, 0, 1]),
        ((22, 28, 30), (0.374269, 0.577181, 0.566667), [1, 0, 0]),
    ]
    for step, (tmp, r_exp, c_exp) in enumerate(cases):
        tmp = torch.tensor(tmp, dtype=torch.float64)
        S = S + tmp
        r = running_ratio(tmp, S, step)
        assert r.tolist() == pytest.approx(list(r_exp), abs=ATOL)
        assert weight_targets(r, threshold=0.5).tolist() == c_exp  # 0.5 counts as weaker


def test_weight_net_loss_matches_spec_case():
    assert weight_net_loss(torch.tensor([0.7, 0.2]), torch.tensor([0.0, 1.0])).item() == pytest.approx(
        0.565, abs=ATOL
    )


def test_fusion_on_logits_matches_spec_case():
    logits = {"audio": torch.tensor([[2.0, 0, 1]]), "video": torch.tensor([[0.0, 3, 1]])}
    out = fuse(logits, {"audio": 0.4, "video": 0.6})
    assert torch.allclose(out, torch.tensor([[0.8, 1.8, 1.0]]), atol=ATOL)


# ---------------------------------------------------------------------------- the step vs the official loop
DIMS = {"a": 6, "b": 6}


def _tiny(hp: SustainedBoostHyper, seed: int = 0):
    torch.manual_seed(seed)
    method = SustainedBoost(hp, ("a", "b"), 3, DIMS)
    encoders = nn.ModuleDict({m: nn.Sequential(nn.Linear(4, 6), nn.ReLU()) for m in DIMS})
    model = MultimodalModel(encoders, method.build_heads(DIMS, 3))
    return method, model


def _context(model, optimizers, cfg, epochs=1):
    return Context(
        model=model,
        optimizers=optimizers,
        device=torch.device("cpu"),
        train_cfg=cfg,
        modalities=("a", "b"),
        num_classes=3,
        seed=0,
        epochs=epochs,
    )


def _batches(n=3, bs=8):
    g = torch.Generator().manual_seed(1)
    return [
        {
            "a": torch.randn(bs, 4, generator=g),
            "b": torch.randn(bs, 4, generator=g),
            "label": torch.randint(0, 3, (bs,), generator=g),
        }
        for _ in range(n)
    ]


def _official_replay(model, batches, lr, lam=0.2):
    """njustkmg/NeurIPS25-AUG@966dbf5 ``train_audio_video`` written out for a model with these
    modules: one SGD with g_w at lr/10, torch 1.11 zero_grad (zeros), soft-label CE for the
    residual, per-sample score loop, ``del p.grad`` at the end of each batch."""
    h = model.heads
    gw_ids = {id(p) for p in h.weight_net.parameters()}
    base = [p for p in model.parameters() if id(p) not in gw_ids]
    opt = torch.optim.SGD(
        [{"params": base, "lr": lr}, {"params": list(h.weight_net.parameters()), "lr": lr / 10}],
        lr=lr,
        momentum=0.9,
        weight_decay=1e-4,
    )
    s_a = s_v = 0.0
    score = {"a": 0.0, "b": 0.0}

    def classfier(m, x, w):
        feature = h.fc_out(F.relu(h.first[m](x)))
        o_fea, add_fea = feature, None
        layers = list(h.added[m])
        for i, layer in enumerate(layers):
            add_fea = w * h.fc_out(F.relu(layer(x)))
            feature = feature + add_fea
            if i + 1 < len(layers):
                o_fea = feature
        return feature, o_fea, add_fea

    for step, batch in enumerate(batches):
        y = batch["label"]
        y1h = F.one_hot(y, 3).float()
        opt.zero_grad(set_to_none=False)
        w_ = torch.tensor([[float(s_a)], [float(s_v)]])
        with torch.no_grad():
            w = h.weight_net.net(w_.unsqueeze(0))
        feats = {m: model.encoders[m](batch[m]) for m in ("a", "b")}
        tmp = {}
        for i, m in enumerate(("a", "b")):
            out, o_fea, add_fea = classfier(m, feats[m], w[:, i][0])
            if add_fea is None:
                loss = F.cross_entropy(out, y)
            else:
                kl = y1h * o_fea.detach().softmax(1)
                loss = F.cross_entropy(out, y) + F.cross_entropy(o_fea, y) + F.cross_entropy(add_fea, y)
                loss = loss - lam * soft_ce(add_fea, kl)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=False)
            tmp[m] = sum(F.softmax(out, 1)[j][y[j]] for j in range(out.size(0))).detach()
        score["a"] += tmp["a"]
        score["b"] += tmp["b"]
        s_a = (tmp["a"] / (step + 1) + score["a"] * (step / (step + 1))) / (
            tmp["b"] / (step + 1) + score["b"] * (step / (step + 1))
        )
        s_v = 1 / s_a
        w = h.weight_net.net(w_.unsqueeze(0))
        label = torch.tensor([[0.0], [1.0]] if s_a > 1.0 else [[1.0], [0.0]]).unsqueeze(0)
        F.mse_loss(w, label).backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
        for p in model.parameters():
            p.grad = None
    return float(s_a), float(s_v)


def test_training_step_matches_the_official_loop_step_for_step():
    hp = SustainedBoostHyper(assignment="fixed", fixed_classifiers={"a": 2, "b": 3}, hidden_dim=5)
    method, model = _tiny(hp)
    reference = copy.deepcopy(model)
    cfg = TrainConfig(lr=0.1)
    ctx = _context(model, method.configure_optimizers(model, cfg), cfg)
    batches = _batches()
    for step, batch in enumerate(batches):
        ctx.step_in_epoch = step
        out = method.training_step(model, batch, ctx)
        assert set(out) >= {"loss", "loss_a", "loss_b", "loss_w", "acc_a", "acc_b"}
    r = _official_replay(reference, batches, lr=0.1)
    assert method._r.tolist() == pytest.approx(list(r), abs=1e-5)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(p, q, atol=ATOL), name
    assert all(p.grad is None for p in model.parameters())


def test_zero_grad_mode_none_differs_from_official_momentum_updates():
    batches = _batches(2)
    params = {}
    for mode in ("zeros", "none"):
        hp = SustainedBoostHyper(zero_grad_mode=mode, hidden_dim=5)
        method, model = _tiny(hp)
        cfg = TrainConfig(lr=0.1)
        ctx = _context(model, method.configure_optimizers(model, cfg), cfg)
        for step, batch in enumerate(batches):
            ctx.step_in_epoch = step
            method.training_step(model, batch, ctx)
        params[mode] = {n: p.detach().clone() for n, p in model.named_parameters()}
    # "a" (first) gets momentum-only updates at b's step and g_w's step under "zeros" only
    assert not torch.allclose(params["zeros"]["encoders.a.0.weight"], params["none"]["encoders.a.0.weight"])


def test_classifier_losses_never_reach_the_weight_network():
    hp = SustainedBoostHyper(assignment="fixed", fixed_classifiers={"a": 2, "b": 2}, hidden_dim=5)
    method, model = _tiny(hp)
    feats = {m: model.encoders[m](_batches(1)[0][m]) for m in DIMS}
    w = method._weights(model.heads, torch.tensor([0.5, 2.0]))
    assert not w.requires_grad
    z = model.heads.classifier_logits("a", feats["a"])
    loss, _, _ = sub_loss(z, _batches(1)[0]["label"], w[0], 0.2)
    loss.backward()
    assert all(p.grad is None for p in model.heads.weight_net.parameters())


# ---------------------------------------------------------------------------- heads and optimiser
def test_all_classifiers_share_one_fc_out_and_added_layers_are_xavier_zero_bias():
    _, model = _tiny(SustainedBoostHyper(hidden_dim=5))
    heads = model.heads
    n_params = sum(p.numel() for p in heads.parameters())
    layer = heads.add_classifier("b")
    assert sum(p.numel() for p in heads.parameters()) == n_params + 6 * 5 + 5  # d * hidden + hidden
    assert torch.count_nonzero(layer.bias) == 0
    assert heads.count("b") == 2 and heads.count("a") == 1
    x = torch.randn(3, 6)
    z = heads.classifier_logits("b", x)
    assert z.shape == (2, 3, 3)
    assert torch.allclose(z[1], heads.fc_out(F.relu(layer(x))))
    assert type(heads.fc_out) is nn.Linear and heads.fc_out.in_features == 5


@pytest.mark.parametrize("train_added", [True, False])
def test_added_classifier_joins_the_base_param_group_only_when_trained(train_added):
    hp = SustainedBoostHyper(hidden_dim=5, train_added_layers=train_added)
    method, model = _tiny(hp)
    cfg = TrainConfig(lr=0.1)
    opts = method.configure_optimizers(model, cfg)
    groups = opts["main"].param_groups
    assert groups[1]["lr"] == pytest.approx(0.01)  # g_w at lr * 0.1
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.heads.weight_net.parameters()}
    n_base = len(groups[0]["params"])
    method.pending = ["b"]
    method.on_epoch_start(_context(model, opts, cfg))
    layer = model.heads.added["b"][0]
    in_group = {id(p) for p in groups[0]["params"]}
    assert (id(layer.weight) in in_group) is train_added
    assert len(groups[0]["params"]) == n_base + (2 if train_added else 0)
    assert method.counts == {"a": 1, "b": 2} and method.pending == []


def test_weight_network_switches():
    off, model = _tiny(SustainedBoostHyper(weight_net="off", hidden_dim=5))
    assert model.heads.weight_net is None
    assert len(off.configure_optimizers(model, TrainConfig())["main"].param_groups) == 1
    assert off._weights(model.heads, torch.zeros(2)).tolist() == [1.0, 1.0]
    fixed, model = _tiny(SustainedBoostHyper(weight_net="fixed", weight_value=0.25, hidden_dim=5))
    assert fixed._weights(model.heads, torch.zeros(2)).tolist() == [0.25, 0.25]


def test_predict_fuses_ensemble_logits_with_fixed_weights():
    hp = SustainedBoostHyper(
        fusion_weights={"a": 0.4, "b": 0.6}, assignment="fixed", fixed_classifiers={"b": 3}, hidden_dim=5
    )
    method, model = _tiny(hp)
    model.eval()
    batch = _batches(1)[0]
    out = method.predict(model, batch)
    assert set(out) == {"fusion", "a", "b"}
    assert torch.allclose(out["fusion"], 0.4 * out["a"] + 0.6 * out["b"], atol=ATOL)
    w = model.heads.weight_net(torch.zeros(1)).item()  # r starts at 0
    feat = model.encoders["b"](batch["b"])
    z = model.heads.classifier_logits("b", feat)
    assert torch.allclose(out["b"], z[0] + w * (z[1] + z[2]), atol=ATOL)


def test_on_epoch_end_decides_additions_only_at_check_epochs():
    method, model = _tiny(SustainedBoostHyper(hidden_dim=5))
    cfg = TrainConfig()
    ctx = _context(model, method.configure_optimizers(model, cfg), cfg, epochs=20)  # t_N = 2
    for epoch, S, pending in [
        (0, (30.5, 30), ["b"]),
        (1, (29, 30), ["a"]),
        (2, (29, 30), []),
        (3, (30.2, 30), []),
    ]:
        ctx.epoch = epoch
        method.on_epoch_start(ctx)  # applies the previous check's additions
        method._S = torch.tensor(S)
        method.on_epoch_end(ctx)
        assert method.pending == pending, epoch
        diag = method.epoch_diagnostics()
        assert diag["confidence_ratio"] == pytest.approx(S[0] / S[1], abs=ATOL)
        assert diag["aca_check"] is (epoch in (0, 1, 3))
    assert method.counts == {"a": 2, "b": 2} and method.additions == ["b", "a"]
    fixed, model = _tiny(
        SustainedBoostHyper(hidden_dim=5, assignment="fixed", fixed_classifiers={"a": 1, "b": 4})
    )
    ctx.model = model
    ctx.epoch = 0
    fixed._S = torch.tensor([40.0, 10.0])
    fixed.on_epoch_end(ctx)
    assert fixed.pending == [] and fixed.counts == {"a": 1, "b": 4}


def test_three_modality_check_adds_to_every_weak_modality():
    method = SustainedBoost(
        SustainedBoostHyper(), ("rgb", "of", "depth"), 25, {"rgb": 4, "of": 4, "depth": 4}
    )
    assert method.rho_min == pytest.approx(0.4) and method.target_threshold == pytest.approx(0.5)
    assert method.fusion_weights == pytest.approx({m: 1 / 3 for m in ("rgb", "of", "depth")})
    heads = method.build_heads(method.feature_dims, 25)
    ctx = Context(
        model=MultimodalModel(nn.ModuleDict(), heads),
        optimizers=None,
        device=torch.device("cpu"),
        train_cfg=None,
        modalities=method.modalities,
        num_classes=25,
        seed=0,
        epochs=100,
    )
    method._S = torch.tensor([10.0, 12.0, 30.0])
    method.on_epoch_end(ctx)
    assert method.pending == ["rgb", "of"]
    ratio = method.epoch_diagnostics()["confidence_ratio"]
    assert [ratio[m] for m in ("rgb", "of", "depth")] == pytest.approx([0.238095, 0.3, 1.363636], abs=ATOL)


def test_state_dict_round_trip_rebuilds_grown_heads():
    method, model = _tiny(SustainedBoostHyper(hidden_dim=5))
    cfg = TrainConfig()
    ctx = _context(model, method.configure_optimizers(model, cfg), cfg)
    method.pending = ["b"]
    method.on_epoch_start(ctx)
    method.pending = ["a"]
    method._r = torch.tensor([1.5, 1 / 1.5])
    state = method.state_dict()
    fresh = SustainedBoost(SustainedBoostHyper(hidden_dim=5), ("a", "b"), 3, DIMS)
    fresh.load_state_dict(state)
    heads = fresh.build_heads(DIMS, 3)
    assert heads.count("b") == 2 and heads.count("a") == 1 and fresh.pending == ["a"]
    heads.load_state_dict(model.heads.state_dict())  # same structure, same keys
    assert fresh._r.tolist() == pytest.approx([1.5, 1 / 1.5])
    assert math.isclose(fresh.state_dict()["r"][0], 1.5)


def test_head_init_torch_keeps_pytorchs_default_init_as_the_nvgesture_code():
    _, model = _tiny(SustainedBoostHyper(hidden_dim=5, head_init="torch"))
    heads = model.heads
    assert all(torch.count_nonzero(heads.first[m].bias) > 0 for m in heads.modalities)  # torch: uniform bias
    assert torch.count_nonzero(heads.fc_out.bias) > 0
    _, xmodel = _tiny(SustainedBoostHyper(hidden_dim=5))
    assert torch.count_nonzero(xmodel.heads.fc_out.bias) == 0  # xavier-normal / zero bias
    assert SustainedBoostHyper().train_added_layers is False  # the official optimiser is built once
