"""mmcosine (specs/methods/mmcosine.md): every numeric case of §8, the training step against a
restatement of the official main_CD.py computation on real mfeat and mfeat3 batches, the
evaluation flag, the refusals, the settings, the conformance kit and exact resume."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from _method_runs import check_method_toml, cli_short_run, mfeat_setup, plain_sgd

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.registry import get_method
from mmbench.errors import ConfigError
from mmbench.methods.mmcosine import CosineHead, cosine_logits
from mmbench.testing import check_method

ATOL = 1e-6
W = torch.tensor([[1, 0, 0.5, 0], [0, 1, 0, 0.5], [0.5, 0.5, 0.5, 0.5]])
B = torch.tensor([0.2, -0.2, 0.0])
FEATS = {"a": torch.tensor([[1, 0.5], [0.2, 0.4]]), "v": torch.tensor([[0.3, 0.2], [0.1, 0.4]])}
Y = torch.tensor([0, 1])


def spec_head(scaling=10.0):
    head = CosineHead([2, 2], 3, ("a", "v"), scaling)
    with torch.no_grad():
        head.fc.weight.copy_(W)
        head.fc.bias.copy_(B)
    return head


def test_cosine_logits_and_loss_of_the_spec():
    z = spec_head()(FEATS)
    torch.testing.assert_close(
        z["a"],
        torch.tensor([[8.944272, 4.472136, 9.486833], [4.472136, 8.944272, 9.486833]]),
        atol=ATOL,
        rtol=0,
    )
    torch.testing.assert_close(
        z["v"],
        torch.tensor([[8.320503, 5.547002, 9.805807], [2.425356, 9.701425, 8.574929]]),
        atol=ATOL,
        rtol=0,
    )
    torch.testing.assert_close(
        z["fusion"],
        torch.tensor([[17.264775, 10.019138, 19.292640], [6.897492, 18.645697, 18.061762]]),
        atol=ATOL,
        rtol=0,
    )


@pytest.mark.parametrize("s,want", [(10.0, 1.297405), (1.0, 0.904297), (15.0, 1.718311)])
def test_loss_for_each_scaling(s, want):
    assert F.cross_entropy(spec_head(s)(FEATS)["fusion"], Y).item() == pytest.approx(want, abs=ATOL)


def test_scale_invariance_in_features_and_weights():
    z = cosine_logits(FEATS, W, (2, 2), ("a", "v"), 10.0)
    z2 = cosine_logits({"a": 3 * FEATS["a"], "v": FEATS["v"]}, 2 * W, (2, 2), ("a", "v"), 10.0)
    for k in z:
        torch.testing.assert_close(z[k], z2[k], atol=ATOL, rtol=0)


def test_linear_evaluation_is_the_plain_head_and_disagrees_on_the_second_sample():
    head = spec_head()
    lin = head.linear(FEATS)
    torch.testing.assert_close(lin, torch.tensor([[1.35, 0.4, 1.0], [0.45, 0.4, 0.55]]), atol=ATOL, rtol=0)
    assert lin[1].argmax().item() == 2 and head(FEATS)["fusion"][1].argmax().item() == 1


# ----------------------------------------------------------------------------- official step, restated
def _official_loss(model, batch, modalities, s):
    """main_CD.py:109-141 written out: per-modality slices of fc_out.weight (transposed, normalised
    along dim 0 as the code does), normalised features, scaled, summed; CE."""
    feats = {m: model.encoders[m](batch[m]) for m in modalities}
    w = model.heads.fc.weight
    out, start = 0, 0
    for m in modalities:
        d = feats[m].shape[1]
        wt = torch.transpose(w[:, start : start + d], 0, 1)
        out = out + torch.mm(F.normalize(feats[m], dim=1), F.normalize(wt, dim=0)) * s
        start += d
    return F.cross_entropy(out, batch["label"])


@pytest.mark.parametrize("dataset", ["mfeat", "mfeat3"])
def test_step_equals_the_official_computation(dataset):
    meth, model, batch, ctx = mfeat_setup("mmcosine", dataset=dataset)
    ctx.optimizers = plain_sgd(model, lr=1.0)
    ref = copy.deepcopy(model)
    loss_ref = _official_loss(ref, batch, meth.modalities, 10.0)
    loss_ref.backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = meth.training_step(model, batch, ctx)
    assert out["loss"].item() == pytest.approx(loss_ref.item(), abs=1e-5)
    for (n, p), (_, pr) in zip(model.named_parameters(), ref.named_parameters()):
        want = pr.grad if pr.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(before[n] - p.detach(), want, atol=1e-5, rtol=1e-4, msg=n)
    assert torch.equal(before["heads.fc.bias"], model.heads.fc.bias)  # the bias is never trained


def test_predict_follows_eval_logits():
    meth, model, batch, _ = mfeat_setup("mmcosine", params={"eval_logits": "linear"})
    model.eval()
    out = meth.predict(model, batch)
    feats = meth.encode(model, batch)
    torch.testing.assert_close(out["fusion"], model.heads.linear(feats))
    cos = model.heads(feats)
    for m in meth.modalities:
        torch.testing.assert_close(out[m], cos[m])
    assert "main_CD.py" in meth.head_meanings()["fusion"]
    meth2, model2, _, _ = mfeat_setup("mmcosine")
    model2.load_state_dict(model.state_dict())
    model2.eval()
    torch.testing.assert_close(meth2.predict(model2, batch)["fusion"], cos["fusion"])


def test_refusals():
    with pytest.raises(ConfigError, match="nce_weight must be 0"):
        resolve_config("mfeat", "mmcosine", {"method.nce_weight": 0.1})
    with pytest.raises(ConfigError, match="eval_logits"):
        resolve_config("mfeat", "mmcosine", {"method.eval_logits": "bias"})
    with pytest.raises(ConfigError, match="fusion"):
        resolve_config("mfeat", "mmcosine", {"method.fusion": "gated"})
    with pytest.raises(ConfigError, match="scaling must be positive"):
        resolve_config("mfeat", "mmcosine", {"method.scaling": 0})


def test_settings_have_sources_and_the_official_cremad_setup():
    check_method_toml("mmcosine")
    cfg = resolve_config("cremad", "mmcosine", {"protocol": "official"})
    t = cfg.train
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.step_size, t.gamma) == (
        "sgd",
        1e-3,
        0.9,
        1e-4,
        100,
        0.1,
    )
    assert (t.batch_size, t.epochs, t.step_at) == (32, 200, "epoch_end")
    assert cfg.method_params["eval_logits"] == "linear" and cfg.method_params["head_init"] == "torch"


@pytest.mark.slow
def test_runs_through_the_cli_and_logs_cosines(tmp_path):
    run, history = cli_short_run(tmp_path, "mmcosine")
    rec = json.loads((run / "result.json").read_text())
    assert rec["status"] == "finished" and rec["heads"]["image"].startswith("s * cos")
    d = history[-1]["diagnostics"]
    assert -1 <= d["cos_image"] <= 1 and d["weight_norm_fourier"] > 0


@pytest.mark.slow
def test_conformance_kit():
    report = check_method(get_method("mmcosine"))
    assert set(report.passed) == {"mfeat", "mfeat3"}
