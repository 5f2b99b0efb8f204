"""MCR: every numeric case of the method's specification (values and gradients of the three
games for two and three modalities, NT-Xent, CEB), a step against a restatement of the official
``MCR_Model``/``Bias_Infusion_MCR_Reg`` loop, the released no-regulariser flag, resume with the
same permutations, and the settings file."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _method_runs import RecordingOptimizers, check_method_toml, mfeat_setup, plain_sgd

from mmbench.benchmark.seeding import stream_generator
from mmbench.methods.divergences import js_divergence, nt_xent
from mmbench.methods.mcr import draw_permutations, mipd, proper_subsets

ATOL = 1e-6


def _t(*rows, grad=True):
    return torch.tensor(rows, dtype=torch.float64).requires_grad_(grad)


def _two():
    psi = {
        "a": _t([1, 0.5], [0.2, -0.3], [-0.4, 0.8], [0.6, 0.1]),
        "v": _t([0.3, -0.2], [0.5, 0.4], [-0.1, 0.2], [0, -0.6]),
    }
    w = {"a": _t([1, 0], [0, 1], [0.5, -0.5]), "v": _t([0.2, 0.4], [-0.3, 0.1], [0.6, 0])}
    b = _t(0.1, -0.1, 0)
    return psi, w, b


def _regulariser(psi, w, b, perms, game, rows):
    z = sum(psi[m] @ w[m].t() for m in psi).add(b).detach().requires_grad_(True)
    q = {m: psi[m] @ w[m].t() for m in psi}
    r, terms = mipd(q, b, z, perms, rows, game, 1.0)
    r.backward()
    return r, terms, z


P2 = torch.tensor([1, 0, 3, 2, 2, 3, 0, 1])
ROWS2 = torch.arange(4).repeat(2)


def test_two_modality_target_and_terms():
    psi, w, b = _two()
    z = sum(psi[m] @ w[m].t() for m in psi) + b
    torch.testing.assert_close(
        z.detach(),
        _t([1.08, 0.29, 0.43], [0.56, -0.51, 0.55], [-0.24, 0.75, -0.66], [0.46, -0.06, 0.25], grad=False),
    )
    _, terms, _ = _regulariser(psi, w, b, {"a": P2, "v": P2}, "independent", ROWS2)
    assert float(terms[(("a",), "a")].detach()) == pytest.approx(0.041468, abs=ATOL)
    assert float(terms[(("v",), "v")].detach()) == pytest.approx(0.002873, abs=ATOL)


def test_greedy_value_is_zero_but_its_gradients_are_not():
    psi, w, b = _two()
    r, _, z = _regulariser(psi, w, b, {"a": P2, "v": P2}, "greedy", ROWS2)
    assert float(r.detach()) == pytest.approx(0.0, abs=1e-12)
    assert psi["a"].grad[0].tolist() == pytest.approx([-0.009178, 0.007349], abs=ATOL)
    torch.testing.assert_close(
        w["v"].grad,
        _t([-0.003492, 0.008164], [0.007486, -0.008465], [-0.003994, 0.000300], grad=False),
        atol=ATOL,
        rtol=0,
    )
    assert b.grad.abs().max() < 1e-12 and z.grad.abs().max() < 1e-12


def test_independent_and_collaborative_games():
    psi, w, b = _two()
    r, _, z = _regulariser(psi, w, b, {"a": P2, "v": P2}, "independent", ROWS2)
    assert float(r.detach()) == pytest.approx(-0.044340, abs=ATOL)
    assert b.grad.tolist() == pytest.approx([-0.003838, 0.000219, 0.003619], abs=ATOL)
    assert z.grad[0].tolist() == pytest.approx([-0.008946, 0.007073, 0.001873], abs=ATOL)
    assert psi["a"].grad[0].tolist() == pytest.approx([-0.010467, 0.006311], abs=ATOL)
    psi, w, b = _two()
    r, _, _ = _regulariser(psi, w, b, {"a": P2, "v": P2}, "collaborative", ROWS2)
    assert float(r.detach()) == pytest.approx(-0.044340, abs=ATOL)
    assert psi["a"].grad[0].tolist() == pytest.approx([-0.011755, 0.005273], abs=ATOL)
    assert w["v"].grad[0].tolist() == pytest.approx([0.000848, -0.017369], abs=ATOL)


@pytest.mark.parametrize(
    "game, value, dpsi_t, db",
    [
        ("greedy", -0.041176, [-0.003816, 0.000249], [0.002057, -0.002769, 0.000713]),
        ("independent", -0.244037, [0.001506, -0.003375], [-0.011999, -0.007124, 0.019122]),
        ("collaborative", -0.148966, [0.006827, -0.007000], [-0.008685, -0.003826, 0.012511]),
    ],
)
def test_three_modalities(game, value, dpsi_t, db):
    psi, w, b = _two()
    psi["t"] = _t([0.5, 0.5], [-0.2, 0.1], [0.3, -0.7], [0.9, 0])
    w["t"] = _t([0.1, 0], [0, 0.2], [-0.3, 0.3])
    perms = {
        "a": torch.tensor([1, 0, 3, 2]),
        "v": torch.tensor([2, 3, 0, 1]),
        "t": torch.tensor([3, 2, 1, 0]),
    }
    r, terms, _ = _regulariser(psi, w, b, perms, game, torch.arange(4))
    assert float(r.detach()) == pytest.approx(value, abs=ATOL)
    assert psi["t"].grad[0].tolist() == pytest.approx(dpsi_t, abs=ATOL)
    assert b.grad.tolist() == pytest.approx(db, abs=ATOL)
    if game == "greedy":
        assert w["a"].grad[0].tolist() == pytest.approx([-0.041318, 0.012849], abs=ATOL)
        assert len(terms) == 3 * 6
    assert len(proper_subsets("avt")) == 6


def test_contrastive_and_ceb_terms():
    psi, _, _ = _two()
    psi = {m: v.detach() for m, v in psi.items()}
    y = torch.tensor([0, 1, 2, 1])
    assert float(nt_xent([psi["a"], psi["v"]], y, 0.5)) == pytest.approx(1.748712, abs=ATOL)
    assert float(nt_xent([psi["a"], psi["v"]], y, 0.1)) == pytest.approx(5.719957, abs=ATOL)
    assert float(nt_xent([psi["a"]], torch.tensor([0, 0, 0, 0]), 0.5)) == 0.0  # no negative pair
    z = _t([1.08, 0.29, 0.43], [0.56, -0.51, 0.55], [-0.24, 0.75, -0.66], [0.46, -0.06, 0.25], grad=False)
    w1 = _t([0.5, -0.2, 0.1], [0.3, 0.3, -0.4], grad=False)
    w2 = _t([1, 0], [0, 1], [0.5, 0.5], [-0.5, 1], grad=False)
    cat = torch.cat([psi["a"], psi["v"]], 1)
    assert float(F.mse_loss(cat, F.relu(z @ w1.t()) @ w2.t())) == pytest.approx(0.110193, abs=ATOL)


def test_permutations_come_from_the_stream_and_filters_drop_rows():
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    g1, g2 = stream_generator(0, "mcr/permutations", 5), stream_generator(0, "mcr/permutations", 5)
    a, rows_a = draw_permutations(6, 4, ("x", "y"), g1)
    b, rows_b = draw_permutations(6, 4, ("x", "y"), g2)
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["x"], a["y"]) and torch.equal(rows_a, rows_b)
    assert torch.equal(rows_a, torch.arange(6).repeat(4))
    three, _ = draw_permutations(6, 2, ("x", "y", "z"), stream_generator(0, "mcr/permutations", 5))
    assert not torch.equal(three["x"], three["y"])
    kept, rows = draw_permutations(6, 4, ("x", "y"), stream_generator(0, "s", 1), y, "different_label")
    assert (y[kept["x"]] != y[rows]).all() and len(rows) < 24


def _official_step(model, meth, batch, gen_seed, step, hp):
    """``MCR_Model.forward`` + ``Bias_Infusion_MCR_Reg.before_backward`` restated: CE + multil
    CE; ``shuffle_data`` = eval-mode encoder pass with gradients, permuted features through each
    bias-free ``fc_m_lin`` (other encoders' blocks detached), + ``bias_lin``, JSD to the fused
    logits; greedy sums; NT-Xent; one backward."""
    y = batch["label"]
    mods = meth.modalities
    feats = {m: model.encoders[m](batch[m]) for m in mods}
    heads = model.heads
    z = heads.fused.fc(torch.cat([feats[m] for m in mods], 1))
    loss = F.cross_entropy(z, y) + hp["w_u"] * sum(
        F.cross_entropy(heads.unimodal[m](feats[m]), y) for m in mods
    )
    model.encoders.eval()
    psi = {m: model.encoders[m](batch[m]) for m in mods}
    model.encoders.train()
    gen = stream_generator(gen_seed, "mcr/permutations", step)
    perms = [torch.randperm(len(y), generator=gen) for _ in range(hp["num_samples"])]
    w = dict(zip(mods, torch.split(heads.fused.fc.weight, heads.fused.dims, dim=1)))
    bias = heads.fused.fc.bias
    z_rep = torch.cat([z] * len(perms))
    reg = 0.0
    for e in mods:
        for t in mods:  # the singletons T = {t}
            rows = []
            for p in perms:
                blk = []
                for m in mods:
                    x = psi[m][p] if m == t else psi[m]
                    out = x @ w[m].t()
                    blk.append(out if m == e else out.detach())
                rows.append(sum(blk) + bias)
            j = js_divergence(torch.cat(rows), z_rep)
            reg = reg + (-1.0 if t == e else 1.0) * hp["lam"] * j
    loss = loss + reg + hp["contr_coeff"] * nt_xent([feats[m] for m in mods], y, 0.5)
    model.zero_grad()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return loss.detach(), grads


def test_step_equals_the_restated_official_loop_on_real_data():
    hp = {"lam": 0.5, "w_u": 0.01, "num_samples": 3, "contr_coeff": 1.0}
    meth, model, batch, ctx = mfeat_setup("mcr", params={**hp, "init_from_unimodal": False})
    ctx.global_step = 11
    state = {k: v.clone() for k, v in model.state_dict().items()}
    loss, grads = _official_step(model, meth, batch, ctx.seed, 11, hp)
    model.load_state_dict(state)  # BN running statistics moved in the reference's train pass
    ctx.optimizers = RecordingOptimizers(plain_sgd(model), model)
    out = meth.training_step(model, batch, ctx)
    assert float(out["loss"]) == pytest.approx(float(loss), rel=1e-5)
    for name, g in grads.items():
        torch.testing.assert_close(ctx.optimizers.records[0][name][0], g, rtol=1e-4, atol=1e-6, msg=name)
    assert model.encoders.training  # back in train mode after the eval-mode pass
    assert {"J/image/image", "J/fourier/image"} <= set(ctx.collect_diagnostics())


def test_released_flag_computes_but_does_not_add_the_regulariser():
    base = {"lam": 0.5, "num_samples": 2, "init_from_unimodal": False}
    grads = {}
    for add in (True, False):
        meth, model, batch, ctx = mfeat_setup("mcr", params={**base, "add_regularizer": add})
        ctx.optimizers = RecordingOptimizers(plain_sgd(model), model)
        out = meth.training_step(model, batch, ctx)
        grads[add] = ctx.optimizers.records[0]["heads.fused.fc.weight"][0]
        assert "mipd" in out and "contrastive" in out
    meth, model, batch, ctx = mfeat_setup("mcr", params={**base, "lam": 0.0, "contr_coeff": 0.0})
    ctx.optimizers = RecordingOptimizers(plain_sgd(model), model)
    meth.training_step(model, batch, ctx)
    torch.testing.assert_close(grads[False], ctx.optimizers.records[0]["heads.fused.fc.weight"][0])
    assert not torch.allclose(grads[True], grads[False])


def test_unknown_game_is_refused_in_one_line():
    from mmbench.benchmark.config import resolve_config
    from mmbench.errors import ConfigError

    with pytest.raises(ConfigError, match="method.game must be one of greedy, independent, collaborative"):
        resolve_config("mfeat", "mcr", {"method.game": "zero_sum"}, seed=0, device="cpu")


def test_cli_resume_equals_uninterrupted_run(tmp_path):
    from _method_runs import assert_resume_equal

    overrides = {
        "epochs": 2,
        "data.preset": "smoke",
        "method.init_from_unimodal": False,
        "method.num_samples": 4,
    }
    hist = assert_resume_equal(tmp_path, "mfeat", "mcr", overrides, [1])
    assert {"J/image/image", "J/image/fourier"} <= set(hist[-1]["diagnostics"])


def test_mcr_config_values_are_hyper_parameters_with_sources():
    check_method_toml("mcr")
