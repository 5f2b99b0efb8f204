"""G2D: the numeric cases of the method's specification, a step against a restatement of the
official ``student.py`` loop with SMP, teachers from the unimodal reference runs on a fresh start
and a resume, and the settings file."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from _method_runs import RecordingOptimizers, check_method_toml, mfeat_setup, plain_sgd
from click.testing import CliRunner

from mmbench.cli import cli
from mmbench.methods.g2d import distillation_terms, smp_coefficients, teacher_scores

ATOL = 1e-6


def _t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


Y = torch.tensor([0, 1, 2, 1])
PHI = {"a": _t([1, 0], [0.5, 0.5], [0, 1], [0.2, 0.8]), "v": _t([0.3, 0.1], [0, 0.4], [0.6, 0.2], [0.1, 0.1])}
W = {
    "a": (_t([1, -1], [0.5, 0.5], [-1, 1]), _t(0.1, 0, -0.1)),
    "v": (_t([0.2, 0], [0, 0.3], [0.4, 0.4]), _t(0, 0.05, 0)),
}
T_LOGITS = {
    "a": _t([2, 0, -1], [0, 1, 0], [-1, 0, 1.5], [0, 0.5, 0]),
    "v": _t([0.5, 0, 0], [0, 0.2, 0], [0, 0, 0.3], [0.1, 0, 0]),
}
T_FEATS = {
    "a": _t([0.9, 0.1], [0.4, 0.6], [0.1, 0.9], [0.3, 0.7]),
    "v": _t([0.2, 0.2], [0.1, 0.3], [0.5, 0.1], [0, 0.2]),
}


def test_late_fusion_distillation_and_loss_of_the_spec():
    z_m = {m: PHI[m] @ W[m][0].t() + W[m][1] for m in PHI}
    z = (z_m["a"] + z_m["v"]) / 2
    assert z_m["a"][0].tolist() == pytest.approx([1.1, 0.5, -1.1], abs=ATOL)
    assert z[0].tolist() == pytest.approx([0.58, 0.29, -0.47], abs=ATOL)
    ce = F.cross_entropy(z, Y)
    kd, mse = distillation_terms(z, T_LOGITS, PHI, T_FEATS, 1.0)
    assert float(ce) == pytest.approx(0.837113, abs=ATOL)
    assert [float(kd["a"]), float(kd["v"])] == pytest.approx([0.140738, 0.032279], abs=ATOL)
    assert [float(mse["a"]), float(mse["v"])] == pytest.approx([0.01, 0.01], abs=ATOL)
    assert float(ce + sum(kd.values()) + sum(mse.values())) == pytest.approx(1.030130, abs=ATOL)
    kd2, _ = distillation_terms(z, {"a": T_LOGITS["a"]}, {}, {}, 2.0)
    assert float(kd2["a"]) == pytest.approx(0.177244, abs=ATOL)


def test_smp_suppresses_the_more_confident_teacher():
    s = teacher_scores(T_LOGITS, Y)
    assert [float(s["a"]), float(s["v"])] == pytest.approx([2.637932, 1.556019], abs=ATOL)
    assert smp_coefficients({m: float(v) for m, v in s.items()}) == {"a": 0.0, "v": 1.0}
    assert smp_coefficients({"a": 1.0, "v": 1.0}) == {"a": 1.0, "v": 1.0}
    with pytest.raises(ValueError, match="equal teacher scores"):
        smp_coefficients({"a": 1.0, "v": 1.0}, tie="raise")
    three = {"a": 3.0, "v": 1.0, "t": 2.0}
    assert smp_coefficients(three) == {"a": 0.0, "v": 1.0, "t": 0.0}
    assert smp_coefficients(three, multi="suppress_highest") == {"a": 0.0, "v": 1.0, "t": 1.0}


def _teachers(model, meth, seed=1):
    """Frozen teachers: perturbed copies of the student's encoders and fresh linear heads."""
    gen = torch.Generator().manual_seed(seed)
    teachers, heads = {}, {}
    for m in meth.modalities:
        t = copy.deepcopy(model.encoders[m])
        with torch.no_grad():
            for p in t.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
        teachers[m] = t.eval().requires_grad_(False)
        w = model.heads.unimodal[m]
        head = torch.nn.Linear(w.in_features, w.out_features)
        with torch.no_grad():
            head.weight.copy_(torch.randn(head.weight.shape, generator=gen))
        heads[m] = head.eval().requires_grad_(False)
    return teachers, heads


def _official_student_step(model, meth, batch, teachers, heads, scope):
    """``student.py`` + ``utils.py`` SMP restated: loss, backward, the more confident teacher's
    encoder tensors (4-D only under ``conv``) times 0. Returns grads by parameter name."""
    y = batch["label"]
    feats = {m: model.encoders[m](batch[m]) for m in meth.modalities}
    z_m = {m: model.heads.unimodal[m](feats[m]) for m in meth.modalities}
    z = sum(z_m.values()) / len(z_m)
    with torch.no_grad():
        tf = {m: teachers[m](batch[m]) for m in meth.modalities}
        tl = {m: heads[m](tf[m]) for m in meth.modalities}
    loss = F.cross_entropy(z, y)
    for m in meth.modalities:
        loss = loss + F.kl_div(F.log_softmax(z, 1), F.softmax(tl[m], 1), reduction="batchmean")
        loss = loss + F.mse_loss(feats[m], tf[m])
    model.zero_grad()
    loss.backward()
    score = {m: sum(F.softmax(tl[m], 1)[i][y[i]] for i in range(len(y))) for m in meth.modalities}
    a, v = meth.modalities
    top = a if score[a] > score[v] else v
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    for n in grads:
        if n.startswith(f"encoders.{top}.") and (scope == "encoder" or grads[n].dim() == 4):
            grads[n] = grads[n] * 0
    model.zero_grad()
    return grads, top


@pytest.mark.parametrize("scope", ["conv", "encoder"])
def test_step_equals_the_official_student_loop(scope):
    meth, model, batch, ctx = mfeat_setup("g2d", params={"smp_scope": scope})
    model.eval()
    teachers, heads = _teachers(model, meth)
    meth.set_teachers(teachers)
    meth.set_teacher_heads(heads)
    expected, top = _official_student_step(model, meth, batch, teachers, heads, scope)
    ctx.optimizers = RecordingOptimizers(plain_sgd(model), model)
    meth.training_step(model, batch, ctx)
    got = ctx.optimizers.records[0]
    for name, g in expected.items():
        torch.testing.assert_close(got[name][0], g, rtol=1e-5, atol=1e-7, msg=name)
    zeroed = [n for n, g in expected.items() if n.startswith(f"encoders.{top}.") and not g.abs().any()]
    assert zeroed  # the suppressed branch really lost gradients
    assert ctx.collect_diagnostics()[f"smp_coeff/{top}"] == 0.0


def test_without_teachers_the_step_refuses():
    from mmbench.errors import ConfigError

    meth, model, batch, ctx = mfeat_setup("g2d")
    with pytest.raises(ConfigError, match="g2d has no teachers"):
        meth.training_step(model, batch, ctx)


def _run(results, method, *sets):
    args = ["run", "-m", method, "-d", "mfeat", "--results", str(results), "--device", "cpu", "--no-progress"]
    for s in sets:
        args += ["--set", s]
    return CliRunner().invoke(cli, args)


@pytest.mark.slow
def test_missing_teachers_are_refused_then_a_run_resumes_with_the_same_teachers(tmp_path):
    shared = ["epochs=2", "data.preset=smoke"]
    res = _run(tmp_path, "g2d", *shared)
    assert res.exit_code == 2 and "needs its teachers" in res.output, res.output
    assert not any((tmp_path / "mfeat").glob("g2d*"))  # refused before anything was written
    for m in ("image", "fourier"):
        assert _run(tmp_path, "unimodal", *shared, f"method.modality={m}").exit_code == 0
    full = tmp_path / "full"
    (full / "mfeat").mkdir(parents=True)
    for d in (tmp_path / "mfeat").glob("unimodal-*"):
        shutil.copytree(d, full / "mfeat" / d.name)
    assert _run(full, "g2d", *shared).exit_code == 0
    from mmbench.benchmark.config import resolve_config
    from mmbench.benchmark.trainer import Interrupted, train_run

    cfg = resolve_config("mfeat", "g2d", {"epochs": 2, "data.preset": "smoke"}, seed=0, device="cpu")
    with pytest.raises(Interrupted):
        train_run(cfg, tmp_path, progress=False, stop_after_epochs=1, echo=lambda *_: None)
    res = _run(tmp_path, "g2d", *shared)
    assert res.exit_code == 0 and "resuming" in res.output, res.output
    seed = f"mfeat/{cfg.run_name}/seed-0"
    a = json.loads((full / seed / "result.json").read_text())
    b = json.loads((tmp_path / seed / "result.json").read_text())
    assert a["selection"] == b["selection"]
    assert set(b["teachers_from"]) == {"image", "fourier"}


def test_g2d_config_values_are_hyper_parameters_with_sources():
    check_method_toml("g2d")
