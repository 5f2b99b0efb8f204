"""AMCo: the numeric cases of the method's specification, a step against a restatement of
BalanceBenchmark's ``AMCo_trainer.train_epoch`` (its crash fixed), masks that survive a resume, and
the settings file."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from _method_runs import RecordingOptimizers, assert_resume_equal, check_method_toml, mfeat_setup, plain_sgd

from mmbench.benchmark.seeding import stream_generator
from mmbench.methods.amco import dependence_masses, draw_mask, mask_ratio

ATOL = 1e-6


def _l_t(epoch: int, batch: int, rate: float = 0.1) -> float:
    l_t = 0.0
    for _ in range(batch):
        l_t += epoch / (1.0 / rate)
    return l_t


def test_schedule_position_and_ratio():
    assert [_l_t(e, b) for e, b in [(0, 5), (1, 1), (1, 2), (2, 1), (3, 1)]] == pytest.approx(
        [0, 0.1, 0.2, 0.2, 0.3], abs=1e-12
    )
    assert [mask_ratio(x, 0.3) for x in (0, 0.1, 0.2, 0.3, 0.5)] == pytest.approx(
        [0, 0.5, 0.866025, 1, 1], abs=ATOL
    )


def test_mask_is_the_base_in_the_drawn_order():
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    mask = draw_mask(6, mask_ratio(0.1, 0.3), gen)
    base = torch.tensor([1.0, 1, 1, 0, 0, 0])
    assert mask.tolist() == base[order].tolist()
    # the spec's case: base [1, 1, 1, 0, 0, 0] in order [5, 0, 3, 1, 4, 2]
    assert base[torch.tensor([5, 0, 3, 1, 4, 2])].tolist() == [0, 1, 0, 1, 0, 1]
    assert int(mask.sum()) == 3


Y = torch.tensor([0, 1, 2, 0])
Z_A = torch.tensor(
    [
        [2, 0.5, 0.1, 0, 0.3, 0.2],
        [0.1, 1.8, 0, 0.2, 0.1, 0],
        [0, 0.2, 1.5, 0.1, 0, 0.3],
        [1, 0, 0.2, 0.4, 0.1, 0],
    ],
    dtype=torch.float64,
)
Z_V = torch.tensor(
    [
        [0.2, 0.1, 0, 0.1, 0, 0.1],
        [0, 0.3, 0.1, 0, 0.2, 0],
        [0.1, 0, 0.2, 0, 0.1, 0.1],
        [0.3, 0.1, 0, 0.2, 0, 0],
    ],
    dtype=torch.float64,
)


def test_masses_flag_the_dependent_modality():
    m = dependence_masses({"a": Z_A, "v": Z_V})
    assert [float(m["a"]), float(m["v"])] == pytest.approx([0.619777, 0.380223], abs=ATOL)
    assert float(m["a"]) > 0.5 > float(m["v"])


def test_masked_fused_logits_and_loss():
    mask = torch.tensor([0, 1, 0, 1, 0, 1], dtype=torch.float64)
    w = torch.eye(6, dtype=torch.float64) + 0.1
    b = torch.tensor([0, 0.1, 0, -0.1, 0, 0], dtype=torch.float64)

    def loss(u_a):
        fused = (u_a + Z_V) @ w.t() + b
        return fused, F.cross_entropy(fused, Y) + F.cross_entropy(u_a, Y) + F.cross_entropy(Z_V, Y)

    fused, masked = loss(Z_A * mask)
    assert fused[0].tolist() == pytest.approx([0.32, 0.82, 0.12, 0.12, 0.12, 0.42], abs=ATOL)
    assert float(masked) == pytest.approx(4.657266, abs=ATOL)
    assert float(loss(Z_A)[1]) == pytest.approx(3.139391, abs=ATOL)


def _restated_port_step(model, meth, batch, epoch, step, l_t, dependent, seed):
    """``AMCo_trainer.train_epoch`` for one batch with the (K,) mask: returns the loss and the
    gradients, and the next flags from the joint softmax of the masked logits."""
    y = batch["label"]
    feats = {m: model.encoders[m](batch[m]) for m in meth.modalities}
    split = model.heads.concat.split_logits(feats)
    pt = math.sin(math.pi / 2 * min(0.3, l_t) / 0.3)
    n = int(pt * meth.num_classes)
    order = torch.randperm(meth.num_classes, generator=stream_generator(seed, "amco/mask", step))
    mask = torch.cat([torch.ones(meth.num_classes - n), torch.zeros(n)])[order]
    u = {m: split[m] * mask if dependent[m] else split[m] for m in meth.modalities}
    fused = model.heads.linear_star(sum(u.values()))
    loss = F.cross_entropy(fused, y) + sum(F.cross_entropy(u[m], y) for m in meth.modalities)
    model.zero_grad()
    loss.backward()
    grads = {n_: p.grad.detach().clone() for n_, p in model.named_parameters() if p.grad is not None}
    probs = F.softmax(torch.cat([u[m].detach() for m in meth.modalities], 1), 1)
    k = meth.num_classes
    flags = {
        m: bool(probs[:, j * k : (j + 1) * k].sum() / len(y) > 0.5) for j, m in enumerate(meth.modalities)
    }
    model.zero_grad()
    return loss.detach(), grads, flags


def test_masked_step_equals_the_restated_port_on_real_data():
    meth, model, batch, ctx = mfeat_setup("amco")
    model.eval()
    ctx.epoch, ctx.global_step = 2, 7
    meth.l_t = 0.2
    meth.dependent = {"image": True, "fourier": False}
    loss, grads, flags = _restated_port_step(model, meth, batch, 2, 7, 0.2, dict(meth.dependent), ctx.seed)
    ctx.optimizers = RecordingOptimizers(plain_sgd(model), model)
    out = meth.training_step(model, batch, ctx)
    assert float(out["loss"]) == pytest.approx(float(loss), rel=1e-6)
    for name, g in grads.items():
        torch.testing.assert_close(ctx.optimizers.records[0][name][0], g, rtol=1e-5, atol=1e-7, msg=name)
    assert meth.dependent == flags
    assert meth.l_t == pytest.approx(0.2 + 0.2)


def test_first_batch_of_an_epoch_is_never_masked_and_evaluation_is_unmasked():
    meth, model, batch, ctx = mfeat_setup("amco")
    meth.dependent = {"image": True, "fourier": True}
    ctx.epoch = 3
    meth.on_epoch_start(ctx)
    assert meth.l_t == 0 and not any(meth.dependent.values())
    model.eval()
    out = meth.predict(model, batch)
    feats = {m: model.encoders[m](batch[m]) for m in meth.modalities}
    split = model.heads.concat.split_logits(feats)
    torch.testing.assert_close(out["fusion"], model.heads.linear_star(split["image"] + split["fourier"]))


def test_unknown_flag_and_bad_eps_are_refused_in_one_line():
    from mmbench.benchmark.config import resolve_config
    from mmbench.errors import ConfigError

    with pytest.raises(ConfigError, match="method.mask_target must be one of logits, features"):
        resolve_config("mfeat", "amco", {"method.mask_target": "inputs"}, seed=0, device="cpu")
    with pytest.raises(ConfigError, match="method.eps must be > 0"):
        resolve_config("mfeat", "amco", {"method.eps": 0}, seed=0, device="cpu")


@pytest.mark.parametrize("params", [{}, {"mask_target": "features", "dependent_rule": "sticky"}])
def test_cli_resume_equals_uninterrupted_run(tmp_path, params):
    overrides = {"epochs": 3, "data.preset": "smoke", **{f"method.{k}": v for k, v in params.items()}}
    hist = assert_resume_equal(tmp_path, "mfeat", "amco", overrides, [1, 1])
    diags = hist[-1]["diagnostics"]
    assert {"p_t", "mass/image", "dependent/fourier"} <= set(diags)
    # the mask was live in the last epoch: the resume reproduced drawn masks, not an unmasked run
    assert diags["p_t"] > 0 and diags["dependent/image"] + diags["dependent/fourier"] > 0


def test_amco_config_values_are_hyper_parameters_with_sources():
    check_method_toml("amco")
