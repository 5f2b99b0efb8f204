"""MLB: the numeric cases of the method's specification, the step against a restatement of the
official ``Bias_Infusion_MLB`` (one backward, per-name in-place gradient scaling), resume and the
settings file."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _method_runs import RecordingOptimizers, assert_resume_equal, check_method_toml, mfeat_setup, plain_sgd

from mmbench.methods.divergences import js_divergence
from mmbench.methods.mlb import coefficients, pace_scores

ATOL = 1e-6
Y = torch.tensor([0, 1, 2, 0])
U_A = torch.tensor([[2, 0.1, 0], [0.3, 1.5, 0.2], [0, 0.4, 1], [1.2, 0.9, 0.1]], dtype=torch.float64)
U_V = torch.tensor([[0.4, 0.3, 0.1], [0.2, 0.5, 0.6], [0.1, 0.2, 0.3], [0.3, 0.2, 0.4]], dtype=torch.float64)
U_T = torch.tensor([[0, 0, 0], [0.1, 0.2, 0], [0, 0, 2], [0.5, 0, 0]], dtype=torch.float64)


def _floats(d):
    return [float(v) for v in d.values()]


def test_scores_and_ratios_of_two_modalities():
    s = pace_scores({"a": U_A, "v": U_V}, Y)
    assert _floats(s) == pytest.approx([0.604417, 0.357185], abs=ATOL)
    r, k = coefficients(s, 0.5, 10.0, "beta")
    assert _floats(r) == pytest.approx([0.590958, 1.692167], abs=ATOL)
    assert _floats(k) == pytest.approx([0.798284, 3.996081], abs=ATOL)


def test_symmetric_rule_and_beta_one():
    s = pace_scores({"a": U_A, "v": U_V}, Y)
    assert _floats(coefficients(s, 5.0, 10.0, "symmetric")[1]) == pytest.approx(
        [0.032914, 1.998030], abs=ATOL
    )
    # beta = 1: the slower modality is never accelerated
    assert _floats(coefficients(s, 2.0, 1.0, "beta")[1]) == pytest.approx([0.325974, 1.0], abs=ATOL)


def test_three_modalities():
    s = pace_scores({"a": U_A, "v": U_V, "t": U_T}, Y)
    assert _floats(s) == pytest.approx([0.604417, 0.357185, 0.484837], abs=ATOL)
    r, k = coefficients(s, 0.5, 10.0, "beta")
    assert _floats(r) == pytest.approx([0.696557, 1.524775, 0.991676], abs=ATOL)
    assert _floats(k) == pytest.approx([0.849432, 3.308746, 0.995838], abs=ATOL)


def test_jsd_score_matches_the_code_restatement():
    fused = U_A + U_V
    p, q = F.softmax(U_A, 1), F.softmax(fused, 1)
    m = 0.5 * (p + q)
    expected = 0.5 * ((p * (p / m).log()).sum(1).mean() + (q * (q / m).log()).sum(1).mean())
    assert float(js_divergence(U_A, fused)) == pytest.approx(float(expected), abs=1e-12)
    s = pace_scores({"a": U_A, "v": U_V}, Y, fused, "jsd")
    assert float(s["a"]) == pytest.approx(float(expected), abs=1e-12)


def _official_reference(meth, model, batch, alpha, beta):
    """``Bias_Infusion_MLB``: one backward of the summed losses, then for every named parameter
    with a gradient ``grad *= coeff_m`` when its name is encoder m, unimodal head m or the fused
    weight block m (``fc_m_lin.weight``; here a column slice of one weight). Returns grads by name."""
    y = batch["label"]
    feats = {m: model.encoders[m](batch[m]) for m in meth.modalities}
    logits = model.heads(feats)
    loss = F.cross_entropy(logits["fusion"], y) + sum(F.cross_entropy(logits[m], y) for m in meth.modalities)
    model.zero_grad()
    loss.backward()
    score = {
        m: torch.mean(torch.stack([F.softmax(logits[m], 1)[i][y[i]] for i in range(len(y))])).detach()
        for m in meth.modalities
    }
    a, v = meth.modalities
    ratio_0 = score[v] / score[a]
    ratio_1 = 1 / ratio_0
    coeff = {}
    for m, r in ((a, ratio_0), (v, ratio_1)):
        t = torch.tanh(alpha * (r - 1))
        coeff[m] = 1 + (beta - 1) * t if r > 1 else 1 + t
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    d_a = model.heads.fusion.dims[0]
    for n in grads:
        for m in meth.modalities:
            if n.startswith(f"encoders.{m}.") or n.startswith(f"heads.unimodal.{m}."):
                grads[n] = grads[n] * coeff[m]
    w = grads["heads.fusion.fc.weight"]
    grads["heads.fusion.fc.weight"] = torch.cat([w[:, :d_a] * coeff[a], w[:, d_a:] * coeff[v]], dim=1)
    model.zero_grad()
    return grads, coeff


def test_step_equals_the_official_in_place_scaling_on_real_data():
    meth, model, batch, ctx = mfeat_setup("mlb", params={"alpha": 0.5, "beta": 10.0})
    expected, coeff = _official_reference(meth, model, batch, 0.5, 10.0)
    ctx.optimizers = RecordingOptimizers(plain_sgd(model), model)
    meth.training_step(model, batch, ctx)
    got = ctx.optimizers.records[0]
    for name, g in expected.items():
        torch.testing.assert_close(got[name][0], g, rtol=1e-5, atol=1e-7, msg=name)
    diags = ctx.collect_diagnostics()
    for m in meth.modalities:
        assert diags[f"coeff/{m}"] == pytest.approx(float(coeff[m]), rel=1e-6)
    # the fused bias is not scaled: its gradient is the plain one
    assert any(abs(float(c) - 1) > 1e-3 for c in coeff.values())


def test_outside_the_window_gradients_are_unscaled():
    meth, model, batch, ctx = mfeat_setup("mlb", params={"modulation_starts": 0, "modulation_ends": 0})
    ctx.epoch = 1
    y = batch["label"]
    logits = model.heads({m: model.encoders[m](batch[m]) for m in meth.modalities})
    loss = F.cross_entropy(logits["fusion"], y) + sum(F.cross_entropy(logits[m], y) for m in meth.modalities)
    model.zero_grad()
    loss.backward()
    plain = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    model.zero_grad()
    ctx.optimizers = RecordingOptimizers(plain_sgd(model), model)
    meth.training_step(model, batch, ctx)
    for name, g in plain.items():
        torch.testing.assert_close(ctx.optimizers.records[0][name][0], g, rtol=1e-5, atol=1e-7, msg=name)


def test_predict_returns_the_fused_and_auxiliary_heads():
    meth, model, batch, _ = mfeat_setup("mlb", "mfeat3")
    model.eval()
    out = meth.predict(model, batch)
    assert set(out) == {"fusion", *meth.modalities}
    feats = {m: model.encoders[m](batch[m]) for m in meth.modalities}
    for m in meth.modalities:
        torch.testing.assert_close(out[m], model.heads.unimodal[m](feats[m]))


def test_unknown_rule_is_refused_in_one_line():
    from mmbench.benchmark.config import resolve_config
    from mmbench.errors import ConfigError

    with pytest.raises(ConfigError, match="method.rule must be one of beta, symmetric"):
        resolve_config("mfeat", "mlb", {"method.rule": "cubic"}, seed=0, device="cpu")


def test_cli_resume_equals_uninterrupted_run_and_records_coefficients(tmp_path):
    hist = assert_resume_equal(tmp_path, "mfeat", "mlb", {"epochs": 2, "data.preset": "smoke"}, [1])
    assert {"coeff/image", "coeff/fourier", "ratio/image", "score/fourier"} <= set(hist[-1]["diagnostics"])


def test_mlb_config_values_are_hyper_parameters_with_sources():
    check_method_toml("mlb")
