"""MMPareto (specs/methods/mmpareto.md): the numeric cases of §8, the equality of the
``autograd.grad`` step with the official four-backward procedure on real mfeat data, and runs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from _method_runs import RecordingOptimizers, assert_resume_equal, check_method_toml, mfeat_setup, plain_sgd

from mmbench.methods.mmpareto import combine_encoder_grads, min_norm_2, pareto_weights

ATOL = 1e-6


def _t(*v):
    return torch.tensor(v, dtype=torch.float64)


def _combine(g_mm, g_u, **kw):
    grads, cos, w1 = combine_encoder_grads([_t(*a) for a in g_mm], [_t(*b) for b in g_u], **kw)
    return [g.tolist() for g in grads], float(cos), float(w1)


def test_t1_conflicting_gradients_get_pareto_weights_and_rescale():
    (g,), cos, w1 = _combine([[1, 0]], [[-0.5, 1]])
    assert cos == pytest.approx(-0.447214, abs=ATOL)
    assert w1 == pytest.approx(0.538462, abs=ATOL)
    assert g == pytest.approx([0.930261, 1.395391], abs=ATOL)
    assert math.hypot(*g) == pytest.approx(1.677051, abs=ATOL)
    assert math.hypot(*g) == pytest.approx(1.5 * math.hypot(0.5, 1.0), abs=ATOL)


def test_t2_agreeing_gradients_are_averaged_without_rescale():
    (g,), cos, w1 = _combine([[1, 2]], [[2, 1]])
    assert cos == pytest.approx(0.8, abs=ATOL)
    assert w1 == 0.5
    assert g == pytest.approx([4.5, 4.5], abs=ATOL)


def test_t3_small_multimodal_gradient():
    (g,), cos, w1 = _combine([[0.1, 0]], [[-1, 1]])
    assert cos == pytest.approx(-0.707107, abs=ATOL)
    assert w1 == pytest.approx(0.950226, abs=ATOL)
    assert g == pytest.approx([1.357483, 1.493231], abs=ATOL)
    assert math.hypot(*g) == pytest.approx(2.018044, abs=ATOL)


def test_t4_rescale_is_per_tensor():
    (a, b), cos, w1 = _combine([[1, 0], [0.2]], [[-1, 0.5], [2]])
    assert cos == pytest.approx(-0.256776, abs=ATOL)
    assert w1 == pytest.approx(0.781041, abs=ATOL)
    assert a == pytest.approx([1.686248, 0.328438], abs=ATOL)  # r = 0.436570 < 1: gamma * h only
    assert b == pytest.approx([3.3], abs=ATOL)  # r = 1.851461


def test_encoder_scope_uses_one_ratio_that_never_shrinks():
    (a, b), _, w1 = _combine([[1, 0], [0.2]], [[-1, 0.5], [2]], scope="encoder")
    h = [2 * w1 * x + 2 * (1 - w1) * y for x, y in zip([1, 0, 0.2], [-1, 0.5, 2])]
    r = math.sqrt(0**2 + 0.5**2 + 2.2**2) / math.sqrt(sum(v * v for v in h))
    assert r >= 1
    assert a + b == pytest.approx([1.5 * r * v for v in h], abs=ATOL)


def test_min_norm_solver_clamps_like_the_official_code():
    assert float(min_norm_2(_t(1.0), _t(1.0), _t(4.0))) == 0.999  # v12 >= v11
    assert float(min_norm_2(_t(4.0), _t(1.0), _t(1.0))) == 0.001  # v12 >= v22
    assert float(min_norm_2(_t(1.0), _t(-0.5), _t(1.25))) == pytest.approx(1.75 / 3.25, abs=1e-12)


def test_zero_cosine_goes_to_the_solver_only_under_the_strict_rule():
    g1, g2 = _t(1, 0), _t(0, 2)
    assert float(pareto_weights(g1, g2, "strict")[1]) == pytest.approx(0.8, abs=ATOL)  # 4 / 5
    assert float(pareto_weights(g1, g2, "nonstrict")[1]) == 0.5


def test_zero_gradient_tensor_stays_zero_without_nan():
    (a, b), _, _ = _combine([[1, 0], [0.0]], [[-0.5, 1], [0.0]])
    assert b == [0.0]
    assert all(math.isfinite(v) for v in a)


def test_gamma_always_false_leaves_unrescaled_tensors_unscaled():
    (a, b), _, _w1 = _combine([[1, 0], [0.2]], [[-1, 0.5], [2]], gamma_always=False)
    assert a == pytest.approx([1.686248 / 1.5, 0.328438 / 1.5], abs=ATOL)
    assert b == pytest.approx([3.3], abs=ATOL)


def _official_reference_grads(meth, model, batch, gamma=1.5):
    """The official ``train_epoch`` procedure: backward per loss with zero_grad in between,
    cloned per-tensor gradients, min-norm weights on the concatenation, then a fourth backward
    of L_total whose per-tensor norm drives the rescale (GeWu-Lab/MMPareto_ICML2024 MMPareto.py)."""
    y = batch["label"]
    feats = {m: model.encoders[m](batch[m]) for m in meth.modalities}
    logits = model.heads(feats)
    losses = {"both": F.cross_entropy(logits["fusion"], y)}
    losses.update({m: F.cross_entropy(logits[m], y) for m in meth.modalities})
    enc = {m: list(model.encoders[m].named_parameters()) for m in meth.modalities}
    grads = {}
    for name, loss in losses.items():
        model.zero_grad()
        loss.backward(retain_graph=True)
        grads[name] = {p: p.grad.detach().clone() for p in model.parameters() if p.grad is not None}
    model.zero_grad()
    sum(losses.values()).backward()
    expected = {p: p.grad.detach().clone() for p in model.parameters()}
    for m in meth.modalities:
        g1 = torch.cat([grads["both"][p].flatten() for _, p in enc[m]]).double()
        g2 = torch.cat([grads[m][p].flatten() for _, p in enc[m]]).double()
        v11, v12, v22 = float(g1 @ g1), float(g1 @ g2), float(g2 @ g2)
        if F.cosine_similarity(g1, g2, dim=0) > 0:
            k = 0.5
        elif v12 >= v11:
            k = 0.999
        elif v12 >= v22:
            k = 0.001
        else:
            k = -1.0 * ((v12 - v22) / (v11 + v22 - 2 * v12))
        for _, p in enc[m]:
            three_norm = torch.norm(expected[p])
            new = 2 * k * grads["both"][p] + 2 * (1 - k) * grads[m][p]
            diff = three_norm / torch.norm(new)
            expected[p] = diff * new * gamma if diff > 1 else new * gamma
    model.zero_grad()
    return expected


@pytest.mark.parametrize("dataset", ["mfeat", "mfeat3"])
def test_step_equals_official_four_backward_procedure_with_m_plus_one_passes(dataset, monkeypatch):
    meth, model, batch, ctx = mfeat_setup("mmpareto", dataset)
    expected = _official_reference_grads(meth, model, batch)
    # BN running statistics moved during the reference forward: restore nothing, BN in train mode
    # uses batch statistics, so the gradients do not depend on the running buffers.
    calls = []
    real_grad = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: calls.append(1) or real_grad(*a, **k))
    ctx.optimizers = RecordingOptimizers(plain_sgd(model), model)
    out = meth.training_step(model, batch, ctx)
    assert len(calls) == len(meth.modalities) + 1
    got = ctx.optimizers.records[0]
    for name, p in model.named_parameters():
        torch.testing.assert_close(got[name][0], expected[p], rtol=1e-4, atol=1e-6, msg=name)
    diags = ctx.collect_diagnostics()
    for m in meth.modalities:
        assert -1 <= diags[f"cos/{m}"] <= 1 and 0 < diags[f"w_mm/{m}"] < 1
    assert math.isfinite(float(out["loss"]))


def test_heads_get_the_plain_gradient_of_their_own_loss():
    meth, model, batch, ctx = mfeat_setup("mmpareto")
    y = batch["label"]
    logits = model.heads({m: model.encoders[m](batch[m]) for m in meth.modalities})
    w = model.heads.unimodal["image"].weight
    (g_img,) = torch.autograd.grad(F.cross_entropy(logits["image"], y), [w])
    (g_fus,) = torch.autograd.grad(F.cross_entropy(logits["fusion"], y), [model.heads.fusion.weight])
    ctx.optimizers = RecordingOptimizers(plain_sgd(model), model)
    meth.training_step(model, batch, ctx)
    rec = ctx.optimizers.records[0]
    torch.testing.assert_close(rec["heads.unimodal.image.weight"][0], g_img, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(rec["heads.fusion.weight"][0], g_fus, rtol=1e-5, atol=1e-7)


def test_unimodal_logits_come_from_separate_heads():
    meth, model, batch, _ = mfeat_setup("mmpareto")
    model.eval()
    out = meth.predict(model, batch)
    assert set(out) == {"fusion", "image", "fourier"}
    fused_w = model.heads.fusion.weight
    assert model.heads.unimodal["image"].weight.data_ptr() != fused_w.data_ptr()
    assert not torch.allclose(out["image"] + out["fourier"], out["fusion"])


def test_cli_resume_equals_uninterrupted_run_and_records_pareto_diagnostics(tmp_path):
    hist = assert_resume_equal(tmp_path, "mfeat", "mmpareto", {"epochs": 2, "data.preset": "smoke"}, [1])
    assert {"cos/image", "w_mm/fourier", "conflict/image"} <= set(hist[-1]["diagnostics"])


def test_mmpareto_config_values_are_hyper_parameters_with_sources():
    check_method_toml("mmpareto")
