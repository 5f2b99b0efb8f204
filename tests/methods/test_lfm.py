"""lfm: every numeric case of its spec (§8), the step against a restatement of the official
``Crema_epoch.py`` step on real mfeat batches, the learnable hyper-step and its held-out items,
the flags, the conformance kit and resume."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from _method_runs import assert_resume_equal, check_method_toml, mfeat_setup, plain_sgd

from mmbench.benchmark.config import resolve_config
from mmbench.datasets.base import counted_carve
from mmbench.errors import ConfigError
from mmbench.methods.lfm import LFM, alignment, fitted_weights, heuristic_weights, hypergradient, lfm_terms
from mmbench.testing import check_method

ATOL = 1e-6


# ----------------------------------------------------------------------------- spec §8
@pytest.mark.parametrize(
    "e,w",
    [
        (0, (0.204624, 0.795376)),
        (1, (0.208099, 0.791901)),
        (10, (0.247759, 0.752241)),
        (50, (0.436681, 0.563319)),
        (69, (0.482252, 0.517748)),
        (100, (0.539155, 0.460845)),
        (150, (0.821314, 0.178686)),
        (199, (0.915989, 0.084011)),
    ],
)
def test_fitted_weights_match_the_official_polynomial(e, w):
    assert fitted_weights(e) == pytest.approx(w, abs=ATOL)


@pytest.mark.parametrize(
    "e,w", [(0, (0.05, 0.95)), (1, (0.259182, 0.740818)), (5, (0.77687, 0.22313)), (10, (0.95, 0.05))]
)
def test_heuristic_weights_match_the_first_upload(e, w):
    assert heuristic_weights(e, 0.3) == pytest.approx(w, abs=ATOL)


def test_loss_alignment_and_gradients_match_the_spec():
    za = torch.tensor([[2.0, 0, -1], [0.5, 0.5, 0]], requires_grad=True)
    zv = torch.tensor([[0.0, 1, 0], [0, 0, 2]], requires_grad=True)
    y = torch.tensor([0, 2])
    assert alignment(za, zv).item() == pytest.approx(0.220457, abs=ATOL)
    assert alignment(za, zv, "js").item() == pytest.approx(0.189704, abs=ATOL)
    ce, al = lfm_terms({"a": za, "v": zv}, y, ("a", "v"), "mixture_kl")
    assert ce.item() == pytest.approx(0.634628, abs=ATOL)
    w_ce, w_al = fitted_weights(0)
    loss = 2.0 * (w_ce * ce + w_al * al)
    assert loss.item() == pytest.approx(0.610412, abs=ATOL)
    assert (2.0 * (0.05 * ce + 0.95 * al)).item() == pytest.approx(0.48233, abs=ATOL)
    loss.backward()
    torch.testing.assert_close(
        za.grad,
        torch.tensor([[0.075308, -0.055054, -0.020253], [0.08058, 0.08058, -0.161161]]),
        atol=ATOL,
        rtol=0,
    )
    torch.testing.assert_close(
        zv.grad,
        torch.tensor([[-0.177025, 0.129416, 0.047609], [-0.029675, -0.029675, 0.05935]]),
        atol=ATOL,
        rtol=0,
    )


def _spec_params():
    U = torch.tensor([[0.5, -0.3], [0.2, 0.8]], requires_grad=True)
    Wa = torch.tensor([[0.1, -0.2], [0.3, 0], [0, 0.2]], requires_grad=True)
    ba = torch.tensor([0, 0.1, 0], requires_grad=True)
    Wv = torch.tensor([[0, 0.1], [-0.1, 0.2], [0.2, 0]], requires_grad=True)
    bv = torch.tensor([0.05, 0, 0], requires_grad=True)
    return [U, Wa, ba, Wv, bv]


def _spec_losses(params, w=(0.05, 0.95)):
    U, Wa, ba, Wv, bv = params
    xa = torch.tensor([[1, 0.5], [0, 1], [1, -1]])
    xv = torch.tensor([[0.5, 0], [1, 1], [-0.5, 0.5]])
    y = torch.tensor([0, 1, 2])

    def fn():
        za = torch.tanh(xa @ U.t()) @ Wa.t() + ba
        zv = xv @ Wv.t() + bv
        ce, al = lfm_terms({"a": za, "v": zv}, y, ("a", "v"), "mixture_kl")
        return ce, w[0] * ce + w[1] * al

    return fn


def test_learnable_hypergradient_matches_the_spec():
    params = _spec_params()
    g = hypergradient(params, _spec_losses(params))
    assert g.item() == pytest.approx(0.000515988, abs=1e-9)
    w_al = min(max(0.95 - 1e-4 * g.item(), 0.05), 0.95)
    assert (w_al, 1 - w_al) == pytest.approx((0.949999948, 0.050000052), abs=1e-9)
    # a classifier weight first: every row-sum of the HVP vanishes, g = 0 (exactly; fp32 rounding here)
    assert hypergradient(params[1:], _spec_losses(params)).item() == pytest.approx(0.0, abs=1e-9)


def test_learnable_step_updates_eta_and_clips(monkeypatch):
    method, model, batch, ctx = mfeat_setup("lfm", params={"alpha_mode": "learnable"})
    ctx.heldout_loader = [{k: v[:16] for k, v in batch.items()}]
    monkeypatch.setattr("mmbench.methods.lfm.hypergradient", lambda params, fn: torch.tensor(-2000.0))
    ctx.epoch = 0
    method.on_epoch_start(ctx)
    assert (method.w_ce, method.w_al, method.eta) == (pytest.approx(0.05), 0.95, 1e-4)
    ctx.epoch = 20
    method.on_epoch_start(ctx)
    assert method.eta == pytest.approx(5e-5) and method.w_al == 0.95
    assert method.alpha_items["label"].shape == (8,)


def test_learnable_step_on_mfeat_moves_w_al_by_eta_g_and_leaves_the_model_in_train_mode():
    method, model, batch, ctx = mfeat_setup("lfm", params={"alpha_mode": "learnable"})
    items = {k: v[:16] for k, v in batch.items()}
    ctx.heldout_loader = [items]
    ctx.epoch = 1  # as_code: eval mode for the hyper-step from epoch 1 on
    ref = copy.deepcopy(model).eval()
    params = [p for m in method.modalities for p in ref.encoders[m].parameters()] + list(
        ref.heads.parameters()
    )

    def fn():
        logits = ref.heads({m: ref.encoders[m](items[m][:8]) for m in method.modalities})
        ce, al = lfm_terms(logits, items["label"][:8], method.modalities, "mixture_kl")
        return ce, 0.05 * ce + 0.95 * al

    g = hypergradient(params, fn).item()
    assert g != 0
    method.on_epoch_start(ctx)
    assert method.w_al == pytest.approx(min(0.95, 0.95 - 1e-4 * g), abs=1e-12)
    assert model.training


def test_counted_carve_is_randperm_under_the_run_seed():
    kept, carved = counted_carve(100, 16, 3)
    assert carved == torch.randperm(100, generator=torch.Generator().manual_seed(3))[:16].tolist()
    assert sorted(kept + carved) == list(range(100)) and kept == sorted(kept)


# ----------------------------------------------------------------------------- step on mfeat
@pytest.mark.parametrize("dataset", ["mfeat", "mfeat3"])
def test_step_equals_the_official_step_on_mfeat(dataset):
    method, model, batch, ctx = mfeat_setup("lfm", dataset=dataset)
    ctx.optimizers = plain_sgd(model, lr=1.0)
    ctx.epoch = 7
    method.on_epoch_start(ctx)
    ref = copy.deepcopy(model)
    y = batch["label"]
    z = {m: ref.heads.cls[m](ref.encoders[m](batch[m])) for m in method.modalities}
    zbar = sum(z.values()) / len(z)
    pairs = [(a, b) for i, a in enumerate(method.modalities) for b in method.modalities[i + 1 :]]
    al = 0
    for a, b in pairs:  # Crema_epoch.py:38-45, restated
        p, q = F.softmax(z[a], 1), F.softmax(z[b], 1)
        m = (p + q) / 2
        al = al + 0.5 * (
            F.kl_div(p.log(), m, reduction="batchmean") + F.kl_div(q.log(), m, reduction="batchmean")
        )
    w_ce, w_al = fitted_weights(7)
    (2 * (w_ce * F.cross_entropy(zbar, y) + w_al * al / len(pairs))).backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    method.training_step(model, batch, ctx)
    for n, p in ref.named_parameters():
        torch.testing.assert_close(
            before[n] - dict(model.named_parameters())[n].detach(), p.grad, atol=1e-6, rtol=1e-4, msg=n
        )
    out = method.predict(model, batch)
    assert set(out) == {"fusion", *method.modalities}


def test_budget_epoch_maps_the_polynomial_onto_the_run():
    method, _, _, ctx = mfeat_setup("lfm", params={"alpha_epoch": "budget"})
    ctx.epoch, ctx.epochs = 10, 20
    method.on_epoch_start(ctx)
    assert method.w_ce == pytest.approx(fitted_weights(100)[0])
    assert not math.isclose(method.w_ce, fitted_weights(10)[0])


def test_lfm_refuses_bad_flags():
    with pytest.raises(ConfigError, match="alpha_mode"):
        resolve_config("mfeat", "lfm", {"method.alpha_mode": "bilevel"})
    with pytest.raises(ConfigError, match="align"):
        resolve_config("mfeat", "lfm", {"method.align": "kl"})


def test_lfm_settings_carry_sources_and_official_setup():
    check_method_toml("lfm")
    cfg = resolve_config("cremad", "lfm", {"protocol": "official"})
    assert (cfg.train.lr, cfg.train.epochs, cfg.train.step_size, cfg.train.step_at) == (
        0.01,
        200,
        70,
        "epoch_start",
    )


@pytest.mark.slow
def test_lfm_learnable_passes_the_kit_and_resumes_exactly(tmp_path):
    report = check_method(LFM, datasets=("mfeat",), overrides={"method.alpha_mode": "learnable"})
    assert report.passed
    hist = assert_resume_equal(
        tmp_path,
        "mfeat",
        "lfm",
        {"epochs": 3, "data.limit_train_per_class": 10, "method.alpha_mode": "learnable"},
        [1],
    )
    assert hist[0]["diagnostics"]["w_al"] != 0.95 or hist[1]["diagnostics"]["w_al"] != 0.95
