"""MLA (specs/methods/mla.md): the numeric cases of §8, the alternating steps on real mfeat data
(order, shared head, zero_grad modes, OWM), runs on two and three modalities, resume."""

from __future__ import annotations

import pytest
import torch
from _method_runs import RecordingOptimizers, assert_resume_equal, check_method_toml, mfeat_setup

from mmbench.benchmark.config import resolve_config
from mmbench.errors import ConfigError
from mmbench.methods.mla import MLAHeads, OWMProjector, entropy_batch_weights, entropy_sample_weights, fuse

ATOL = 1e-6


def _t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_t1_per_sample_entropy_gate_matches_spec():
    za, zv = _t([2, 0, 0]), _t([1, 1, 0])
    ent = [-(torch.softmax(z, 1) * torch.log_softmax(z, 1)).sum().item() for z in (za, zv)]
    assert ent == pytest.approx([0.665573, 1.017357], abs=ATOL)
    w = entropy_sample_weights([za, zv])
    assert w[:, 0].tolist() == pytest.approx([0.587050, 0.412950], abs=ATOL)
    fused, _ = fuse([za, zv], "entropy_sample")
    assert fused[0].tolist() == pytest.approx([1.58705, 0.41295, 0.0], abs=ATOL)


def test_t2_batch_entropy_gate_is_one_weight_per_batch():
    za = _t([2, 0, 0], [0, 1, 0])
    zv = _t([1, 1, 0], [0, 0, 3])
    ent = [-(torch.softmax(z, 0) * torch.log_softmax(z, 0)).sum().item() for z in (za, zv)]
    assert ent == pytest.approx([1.640684, 1.355271], abs=ATOL)
    w = entropy_batch_weights([za, zv])
    assert w.tolist() == pytest.approx([0.429127, 0.570873], abs=ATOL)
    fused, _ = fuse([za, zv], "entropy_batch")
    torch.testing.assert_close(fused, w[0] * za + w[1] * zv)
    assert entropy_sample_weights([za, zv])[0].tolist() == pytest.approx([0.587050, 0.352348], abs=ATOL)


def test_t3_owm_projector_updates_and_projects():
    owm = OWMProjector(2)
    owm.P = owm.P.double()
    owm.update(_t([1, 0], [1, 0]), i=0, n=10)
    assert OWMProjector.alpha(0, 10) == pytest.approx(0.1, abs=1e-12)
    torch.testing.assert_close(owm.P, torch.diag(_t(0.090536, 0.995893)), atol=ATOL, rtol=0)
    g = owm.project(_t([1, 1], [2, -1]))
    torch.testing.assert_close(g, _t([0.090536, 0.995893], [0.181071, -0.995893]), atol=ATOL, rtol=0)
    assert OWMProjector.alpha(1, 10) == pytest.approx(0.079433, abs=ATOL)
    owm.update(_t([0, 1]), i=1, n=10)
    torch.testing.assert_close(owm.P, torch.diag(_t(0.776093, 0.630618)), atol=ATOL, rtol=0)
    assert OWMProjector.alpha(5, 10) == pytest.approx(0.0316228, abs=ATOL)


def test_t4_fixed_fusion_weights():
    fused, _ = fuse([_t([2, 0, 0]), _t([1, 1, 0])], "fixed", torch.tensor([0.55, 0.45]))
    assert fused[0].tolist() == pytest.approx([1.55, 0.45, 0.0], abs=ATOL)


def test_one_step_per_modality_through_the_shared_head_in_dataset_order():
    meth, model, batch, ctx = mfeat_setup("mla", "mfeat3")
    ctx.optimizers = RecordingOptimizers(ctx.optimizers, model)
    meth.training_step(model, batch, ctx)
    recs = ctx.optimizers.records
    assert len(recs) == 3
    for i, m in enumerate(("image", "fourier", "morph")):
        # the stepping modality's first encoder tensor has a non-zero gradient; later ones none yet
        first = next(n for n in recs[i] if n.startswith(f"encoders.{m}."))
        assert recs[i][first][0] is not None and recs[i][first][0].abs().sum() > 0
        for later in ("image", "fourier", "morph")[i + 1 :]:
            name = next(n for n in recs[i] if n.startswith(f"encoders.{later}."))
            assert recs[i][name][0] is None
        assert recs[i]["heads.shared.weight"][0] is not None
    # the head is re-applied after the previous step: its weights differ between the steps
    assert not torch.equal(recs[0]["heads.shared.weight"][1], recs[1]["heads.shared.weight"][1])
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("mode", ["zeros", "none"])
def test_zero_grad_mode_decides_whether_momentum_moves_the_previous_encoder(mode):
    meth, model, batch, ctx = mfeat_setup("mla", params={"zero_grad_mode": mode})
    meth.training_step(model, batch, ctx)  # fill momentum buffers
    ctx.optimizers = RecordingOptimizers(ctx.optimizers, model)
    meth.training_step(model, batch, ctx)
    name = next(n for n in ctx.optimizers.records[1] if n.startswith("encoders.image."))
    before_fourier_step = ctx.optimizers.records[1][name][1]
    after = dict(model.named_parameters())[name].detach()
    moved = not torch.equal(before_fourier_step, after)
    assert moved == (mode == "zeros")


def test_owm_on_projects_head_gradient_from_the_second_step_only():
    grads = {}
    for owm in ("off", "on"):
        meth, model, batch, ctx = mfeat_setup("mla", params={"owm": owm})
        ctx.optimizers = RecordingOptimizers(ctx.optimizers, model)
        meth.training_step(model, batch, ctx)
        grads[owm] = [r["heads.shared.weight"][0] for r in ctx.optimizers.records]
        if owm == "on":
            assert meth.owm.P.shape == (128, 128)  # the head's input size, not a hard-coded 512
            assert meth.step_count == 2
            assert ctx.collect_diagnostics()["owm_grad_ratio"] < 1
    torch.testing.assert_close(grads["on"][0], grads["off"][0])  # first step ever: no projection
    assert grads["on"][1].norm() < 0.5 * grads["off"][1].norm()


def test_unequal_feature_sizes_need_a_projection():
    with pytest.raises(ConfigError, match="proj_dim"):
        MLAHeads({"text": 4, "image": 6}, 3, ("text", "image"), None, "xavier")
    heads = MLAHeads({"text": 4, "image": 6}, 3, ("text", "image"), 5, "xavier")
    out = heads({"text": torch.randn(2, 4), "image": torch.randn(2, 6)})
    assert out["text"].shape == out["image"].shape == (2, 3)


def test_fusion_weights_must_match_the_modalities():
    with pytest.raises(ConfigError, match="one per modality"):
        resolve_config("mfeat3", "mla", {"method.fusion_weights": [0.5, 0.5]})
    cfg = resolve_config("mfeat", "mla", {"method.fusion_weights": {"image": 0.55, "fourier": 0.45}})
    assert cfg.method_params["fusion_weights"] == {"image": 0.55, "fourier": 0.45}


def test_predict_fuses_shared_head_logits_with_the_gate():
    meth, model, batch, _ = mfeat_setup("mla", params={"gate": "entropy_sample"})
    model.eval()
    out = meth.predict(model, batch)
    w = entropy_sample_weights([out["image"], out["fourier"]])
    torch.testing.assert_close(out["fusion"], w[0][:, None] * out["image"] + w[1][:, None] * out["fourier"])
    diag = meth.epoch_diagnostics()
    assert sum(diag["gate_weight"].values()) == pytest.approx(1.0, abs=1e-5)


def test_cli_resume_restores_the_owm_projector_state(tmp_path):
    hist = assert_resume_equal(
        tmp_path, "mfeat", "mla", {"epochs": 2, "data.preset": "smoke", "method.owm": "on"}, [1]
    )
    assert hist[-1]["diagnostics"]["owm"] == "on" and "owm_grad_ratio" in hist[-1]["diagnostics"]


def test_mla_config_values_are_hyper_parameters_with_sources():
    check_method_toml("mla")
