"""ogm_ge: every numeric case of specs/methods/ogm_ge.md §8, the gradient modulation on real
mfeat batches, the 2-modality refusal, the CLI end to end and resume equality."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from _method_runs import cli_short_run, cpu_context, resumed_checkpoints
from click.testing import CliRunner

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.registry import get_dataset, get_method
from mmbench.cli import cli
from mmbench.errors import ConfigError
from mmbench.methods.heads import ConcatHead
from mmbench.methods.ogm_ge import (
    confidence_scores,
    modulate_gradients,
    modulation_coefficients,
    scoped_params,
)

ATOL = 1e-6
QUICK = {"epochs": 2, "data.limit_train_per_class": 10}


def spec_head():
    head = ConcatHead([2, 2], 3, ("a", "v"))
    with torch.no_grad():
        head.fc.weight.copy_(torch.tensor([[1, 0, 0.5, 0], [0, 1, 0, 0.5], [0.5, 0.5, 0.5, 0.5]]))
        head.fc.bias.copy_(torch.tensor([0.2, -0.2, 0.0]))
    return head


def spec_feats():
    return {"a": torch.tensor([[1, 0.5], [0.2, 0.1]]), "v": torch.tensor([[0.3, 0.2], [0.1, 0.4]])}


# ----------------------------------------------------------------------------- spec §8 numbers
def test_split_logits_sum_to_fused_logits_as_in_spec():
    out = spec_head()(spec_feats())
    torch.testing.assert_close(
        out["a"], torch.tensor([[1.1, 0.4, 0.75], [0.3, 0.0, 0.15]]), atol=ATOL, rtol=0
    )
    torch.testing.assert_close(
        out["v"], torch.tensor([[0.25, 0.0, 0.25], [0.15, 0.1, 0.25]]), atol=ATOL, rtol=0
    )
    torch.testing.assert_close(out["a"] + out["v"], out["fusion"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("alpha,k_a", [(0.1, 0.890317), (0.3, 0.681141), (0.8, 0.293077)])
def test_ogm_coefficient_matches_official_code_on_spec_logits(alpha, k_a):
    out = spec_head()(spec_feats())
    y = torch.tensor([0, 1])
    s = confidence_scores(out, y, ("a", "v"))
    assert s["a"].item() == pytest.approx(0.739045, abs=ATOL)
    assert s["v"].item() == pytest.approx(0.671093, abs=ATOL)
    ka, kv, rho_v = modulation_coefficients(s["a"], s["v"], alpha)
    assert rho_v.item() == pytest.approx(0.908054, abs=ATOL)
    assert (1 / rho_v).item() == pytest.approx(1.101257, abs=ATOL)
    assert kv.item() == 1.0
    assert ka.item() == pytest.approx(k_a, abs=ATOL)


@pytest.mark.parametrize("alpha,k_a", [(0.1, 0.727095), (0.8, 0.022413)])
def test_ogm_coefficient_from_probabilities(alpha, k_a):
    s_a = torch.tensor([0.8, 0.6]).sum()
    s_v = torch.tensor([0.3, 0.2]).sum()
    ka, kv, rho_v = modulation_coefficients(s_a, s_v, alpha)
    assert (1 / rho_v).item() == pytest.approx(2.8, abs=ATOL)
    assert ka.item() == pytest.approx(k_a, abs=ATOL)
    assert kv.item() == 1.0


@pytest.mark.parametrize("alpha,k_a", [(0.1, 0.900332), (0.8, 0.335963)])
def test_tie_slows_first_modality_in_code_policy_and_none_in_paper_policy(alpha, k_a):
    s = torch.tensor(1.3)
    ka, kv, _ = modulation_coefficients(s, s.clone(), alpha, "code")
    assert ka.item() == pytest.approx(k_a, abs=ATOL) and kv.item() == 1.0
    ka, kv, _ = modulation_coefficients(s, s.clone(), alpha, "paper")
    assert ka.item() == 1.0 and kv.item() == 1.0


def test_dominant_second_modality_is_slowed():
    ka, kv, rho_v = modulation_coefficients(torch.tensor(0.5), torch.tensor(1.4), 0.1)
    assert rho_v.item() == pytest.approx(2.8, abs=ATOL)
    assert ka.item() == 1.0
    assert kv.item() == pytest.approx(1 - torch.tanh(torch.tensor(0.1 * 2.8)).item(), abs=ATOL)


# ----------------------------------------------------------------------------- GE noise
def _encoder_with_grads(seed=0):
    torch.manual_seed(seed)
    enc = torch.nn.Sequential(
        torch.nn.Conv2d(4, 64, 3, bias=True),
        torch.nn.BatchNorm2d(64),
        torch.nn.Flatten(),
        torch.nn.LazyLinear(5),
    )
    enc(torch.randn(2, 4, 8, 8))
    for p in enc.parameters():
        p.grad = torch.randn_like(p)
    return enc


def test_ge_noise_has_zero_mean_and_the_gradient_std_and_spares_bn_and_biases():
    enc = _encoder_with_grads()
    before = {n: p.grad.clone() for n, p in enc.named_parameters()}
    gen = torch.Generator().manual_seed(123)
    modulate_gradients(scoped_params(enc, "conv"), torch.tensor(1.0), noise=True, generator=gen)
    after = {n: p.grad for n, p in enc.named_parameters()}
    diff = after["0.weight"] - before["0.weight"]  # 64*4*3*3 = 2304 entries
    assert abs(diff.mean().item()) < 0.1
    assert diff.std().item() == pytest.approx(before["0.weight"].std().item(), rel=0.08)
    for name in ("0.bias", "1.weight", "1.bias", "3.weight", "3.bias"):  # biases, BN, Linear (conv scope)
        assert torch.equal(after[name], before[name]), name


def test_ge_noise_std_is_taken_before_scaling():
    enc = _encoder_with_grads()
    g = enc[0].weight.grad.clone()
    modulate_gradients(
        [enc[0].weight], torch.tensor(0.1), noise=True, generator=torch.Generator().manual_seed(0)
    )
    eps = enc[0].weight.grad - 0.1 * g
    assert eps.std().item() == pytest.approx(g.std().item(), rel=0.08)  # not 0.1 * std(g)


def test_ogm_without_noise_scales_exactly_and_k1_leaves_gradients_unchanged():
    enc = _encoder_with_grads()
    before = {n: p.grad.clone() for n, p in enc.named_parameters()}
    modulate_gradients(scoped_params(enc, "conv"), torch.tensor(1.0), noise=False)
    assert all(torch.equal(p.grad, before[n]) for n, p in enc.named_parameters())
    modulate_gradients(scoped_params(enc, "conv"), torch.tensor(0.25), noise=False)
    torch.testing.assert_close(enc[0].weight.grad, 0.25 * before["0.weight"], atol=0, rtol=0)


def test_param_scope_conv_takes_4d_kernels_and_non_bias_adds_linear_weights():
    enc = _encoder_with_grads()
    assert [p.shape for p in scoped_params(enc, "conv")] == [enc[0].weight.shape]
    assert {id(p) for p in scoped_params(enc, "non_bias")} == {id(enc[0].weight), id(enc[3].weight)}


def test_ge_noise_is_a_function_of_the_seed_and_step():
    enc1, enc2 = _encoder_with_grads(), _encoder_with_grads()
    for enc in (enc1, enc2):
        modulate_gradients([enc[0].weight], torch.tensor(0.5), True, torch.Generator().manual_seed(9))
    assert torch.equal(enc1[0].weight.grad, enc2[0].weight.grad)


# ----------------------------------------------------------------------------- real data
def _mfeat_setup(method_name, params=None, dataset="mfeat"):
    cfg = resolve_config(dataset, "joint", {"data.limit_train_per_class": 10})
    spec = get_dataset(dataset)
    factories = spec.backbones(cfg.data)
    torch.manual_seed(0)
    encoders = torch.nn.ModuleDict({m: factories[m][0]() for m in spec.modalities})
    dims = {m: factories[m][1] for m in spec.modalities}
    cls = get_method(method_name)
    method = cls(cls.make_hyper(params or {}), spec.modalities, spec.num_classes, dims)
    model = torch.nn.Module()
    model.encoders, model.heads = encoders, method.build_heads(dims, spec.num_classes)
    data = spec.build("train", None, True, cfg.data)
    batch = data.batch(torch.arange(64))
    return method, model, batch, spec


def _sgd_ctx(model, spec, epoch=0):
    opt = torch.optim.SGD(model.parameters(), lr=1.0)  # plain SGD: delta = -grad
    return cpu_context(model, spec, opt, epochs=3, epoch=epoch)


def _joint_grads(model, batch, modalities):
    ref = copy.deepcopy(model)
    feats = {m: ref.encoders[m](batch[m]) for m in modalities}
    F.cross_entropy(ref.heads(feats)["fusion"], batch["label"]).backward()
    return {n: p.grad.clone() for n, p in ref.named_parameters()}, ref


def test_ogm_step_scales_only_the_dominant_encoder_weights_on_mfeat():
    method, model, batch, spec = _mfeat_setup(
        "ogm_ge", {"modulation": "OGM", "param_scope": "non_bias", "alpha": 0.5}
    )
    grads, ref = _joint_grads(model, batch, spec.modalities)
    with torch.no_grad():
        logits = ref.heads({m: ref.encoders[m](batch[m]) for m in spec.modalities})
    a, v = spec.modalities
    s = confidence_scores(logits, batch["label"], spec.modalities)
    k_a, k_v, _ = modulation_coefficients(s[a], s[v], 0.5)
    assert min(k_a.item(), k_v.item()) < 1.0  # one modality is slowed on this batch
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    method.training_step(model, batch, _sgd_ctx(model, spec))
    for n, p in model.named_parameters():
        applied = before[n] - p.detach()
        k = 1.0
        if n.startswith(f"encoders.{a}.") and p.dim() > 1:
            k = k_a.item()
        elif n.startswith(f"encoders.{v}.") and p.dim() > 1:
            k = k_v.item()
        torch.testing.assert_close(applied, k * grads[n], atol=1e-5, rtol=1e-4, msg=n)


def test_ogm_step_outside_window_is_the_joint_step():
    method, model, batch, spec = _mfeat_setup("ogm_ge", {"modulation_ends": 0})
    grads, _ = _joint_grads(model, batch, spec.modalities)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    method.training_step(model, batch, _sgd_ctx(model, spec, epoch=1))
    for n, p in model.named_parameters():
        torch.testing.assert_close(before[n] - p.detach(), grads[n], atol=1e-5, rtol=1e-4, msg=n)


def test_ogm_ge_refuses_three_modalities():
    with pytest.raises(ConfigError, match="at most 2 modalities"):
        resolve_config("mfeat3", "ogm_ge")
    result = CliRunner().invoke(cli, ["run", "-m", "ogm_ge", "-d", "mfeat3", "--set", "epochs=1"])
    assert result.exit_code != 0
    assert "at most 2 modalities" in result.output and "Traceback" not in result.output


def test_ogm_ge_rejects_unknown_flag_values():
    with pytest.raises(ConfigError, match="tie_policy"):
        resolve_config("mfeat", "ogm_ge", {"method.tie_policy": "nearest"})


def test_ogm_ge_runs_end_to_end_through_the_cli(tmp_path):
    run, history = cli_short_run(tmp_path, "ogm_ge", sets=["method.modulation_ends=0"])
    assert json.loads((run / "result.json").read_text())["status"] == "finished"
    diag = [h["diagnostics"] for h in history]
    assert [d["modulated"] for d in diag] == [1.0, 0.0]
    assert all(0 < d["coeff_image"] <= 1 and 0 < d["coeff_fourier"] <= 1 for d in diag)
    assert set(history[0]["test"]) == {"fusion", "image", "fourier"}


def test_ogm_ge_resume_equals_uninterrupted_run(tmp_path):
    cfg = resolve_config("mfeat", "ogm_ge", QUICK)
    resumed_checkpoints(tmp_path, cfg, stop=1)
