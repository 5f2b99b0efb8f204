"""agm: every numeric case of specs/methods/agm.md §8, the exact shortcut against naive masked
passes on real mfeat/mfeat3 models, scale persistence after the window, the clipping rule, the CLI
end to end on mfeat3 and resume equality."""

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from _method_runs import cli_short_run, cpu_context, resumed_checkpoints

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.registry import get_dataset, get_method
from mmbench.methods.agm import (
    clip_if_head_grad_exceeds,
    coalition_outputs,
    decompose,
    dominance_ratios,
    grad_scale,
    modulation_coefficients,
    response_scores,
    response_weights,
    running_mean,
)

ATOL = 1e-6


def close(t, expected):
    torch.testing.assert_close(t.double(), torch.as_tensor(expected, dtype=torch.float64), atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------- spec §8 numbers
def test_agm_coefficients_match_spec_and_not_the_sign_inverted_formula():
    s, sbar = torch.tensor([0.5, 1.2]), torch.tensor([0.8, 1.0])
    k, r, rbar = modulation_coefficients(s, sbar, alpha=0.5, cap=10)
    close(r, [2.013753, 0.496585])
    close(rbar, [1.221403, 0.818731])
    close(k, [0.672889, 1.174770])
    # BalanceBenchmark's sign-inverted ratio exp(s^m - mean_others) gives 1.174770 for k_a
    inverted = 1 / dominance_ratios(s), 1 / dominance_ratios(sbar)
    k_bb = torch.exp(0.5 * torch.clamp(inverted[1] - inverted[0], max=10))
    assert k_bb[0].item() == pytest.approx(1.174770, abs=ATOL)
    assert abs(k[0].item() - k_bb[0].item()) > 0.1


def test_agm_first_step_coefficients_against_zero_running_scores():
    k, _, _ = modulation_coefficients(torch.tensor([1.7, 1.8]), torch.zeros(2), alpha=0.5, cap=10)
    close(k, [0.948773, 1.048731])


def test_running_mean_never_resets():
    sbar, seen = torch.zeros(1), []
    for t, s in enumerate([1.7, 1.5, 1.1], start=1):
        sbar = running_mean(sbar, torch.tensor([s]), t)
        seen.append(sbar.item())
    assert seen == pytest.approx([1.7, 1.6, 1.433333], abs=ATOL)


def _spec_outputs(requires_grad=False):
    f_a0 = torch.tensor([[1.8, -0.1, 0.3]], requires_grad=requires_grad)  # coalition {a}
    f_0v = torch.tensor([[0.5, 0.2, 0.9]], requires_grad=requires_grad)  # coalition {v}
    f_av = torch.tensor([[2.0, 0.0, 1.0]], requires_grad=requires_grad)
    return f_a0, f_0v, f_av


def test_two_modality_decomposition_matches_spec_and_exact_shapley():
    f_a0, f_0v, f_av = _spec_outputs()
    resp = decompose(torch.stack([f_a0, f_0v, f_av]))
    close(resp[0, 0], [1.65, -0.15, 0.2])
    close(resp[1, 0], [0.35, 0.15, 0.8])
    close(resp.sum(0)[0], [2.0, 0.0, 1.0])
    f_00 = torch.tensor([0.4, 0.1, 0.2])
    shapley_a = 0.5 * (f_a0[0] - f_00) + 0.5 * (f_av[0] - f_0v[0])
    close(shapley_a, [1.45, -0.2, 0.1])
    close(resp[0, 0] - f_00 / 2, shapley_a)
    s = response_scores(resp, torch.tensor([0]))
    close(s, [0.336379, 1.219957])


def test_three_modality_decomposition_matches_the_ur_funny_forms():
    torch.manual_seed(0)
    f = {mask: torch.randn(4, 5) for mask in range(1, 8)}  # bit 0 = a, 1 = v, 2 = t
    resp = decompose(torch.stack([f[m] for m in range(1, 8)]))
    # official model/URFunny_net.py names: pad_x = output with x's input zeroed
    total, pad_a, pad_v, pad_t = f[7], f[6], f[5], f[3]
    pad_va, pad_vt, pad_at = f[4], f[1], f[2]
    m_t = (total - pad_t + pad_va) / 3 + (pad_v - pad_at + pad_a - pad_vt) / 6
    m_a = (total - pad_a + pad_vt) / 3 + (pad_v - pad_at + pad_t - pad_va) / 6
    m_v = (total - pad_v + pad_at) / 3 + (pad_a - pad_vt + pad_t - pad_va) / 6
    for got, want in zip(resp, (m_a, m_v, m_t)):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    torch.testing.assert_close(resp.sum(0), total, atol=ATOL, rtol=0)
    assert response_weights(3).sum().item() == pytest.approx(1.0)  # only f(all) survives the sum


def test_three_modality_coefficients_match_spec():
    k, r, rbar = modulation_coefficients(torch.tensor([0.6, 1.0, 1.4]), torch.tensor([0.9, 1.0, 1.1]), 0.5, 7)
    close(r, [1.822119, 1.0, 0.548812])
    close(rbar, [1.161834, 1.0, 0.860708])
    close(k, [0.718821, 1.0, 1.168766])


def test_cap_bounds_the_coefficient():
    k, _, _ = modulation_coefficients(torch.tensor([5.0, 0.0]), torch.tensor([0.0, 5.0]), 1.0, 7)
    assert k[0].item() == pytest.approx(math.exp(7), rel=1e-6)


def test_response_gradients_are_routed_as_in_spec():
    f_a0, f_0v, f_av = _spec_outputs(requires_grad=True)
    resp = decompose(torch.stack([f_a0, f_0v, f_av]))
    fused = grad_scale(resp[0], torch.tensor(2.0)) + grad_scale(resp[1], torch.tensor(0.5))
    g = torch.tensor([[0.3, -1.0, 2.0]])
    (fused * g).sum().backward()
    close(f_av.grad, 1.25 * g)
    close(f_a0.grad, 0.75 * g)
    close(f_0v.grad, -0.75 * g)


def test_scores_floor_the_true_class_probability_at_1e_minus_8():
    resp = torch.tensor([[[100.0, -100.0]]])
    assert response_scores(resp, torch.tensor([1])).item() == pytest.approx(-math.log(1e-8), abs=1e-4)


def test_clipping_triggers_only_when_the_head_gradient_leaves_the_threshold():
    w = torch.nn.Parameter(torch.zeros(2, 2))
    e = torch.nn.Parameter(torch.zeros(3))
    w.grad, e.grad = torch.tensor([[0.5, -0.9], [0.1, 0.2]]), torch.tensor([3.0, 4.0, 0.0])
    assert not clip_if_head_grad_exceeds([w, e], w, 1.0, 1.0).item()
    assert e.grad.tolist() == [3.0, 4.0, 0.0]
    w.grad = torch.tensor([[1.5, 0.0], [0.0, 0.0]])
    assert clip_if_head_grad_exceeds([w, e], w, 1.0, 1.0).item()
    total = math.sqrt(1.5**2 + 25)
    close(e.grad, torch.tensor([3.0, 4.0, 0.0]) / (total + 1e-6))


# ----------------------------------------------------------------------------- real data
def _setup(dataset="mfeat", params=None):
    cfg = resolve_config(dataset, "joint", {"data.limit_train_per_class": 10})
    spec = get_dataset(dataset)
    factories = spec.backbones(cfg.data)
    torch.manual_seed(0)
    encoders = torch.nn.ModuleDict({m: factories[m][0]() for m in spec.modalities})
    dims = {m: factories[m][1] for m in spec.modalities}
    cls = get_method("agm")
    method = cls(cls.make_hyper(params or {}), spec.modalities, spec.num_classes, dims)
    model = torch.nn.Module()
    model.encoders, model.heads = encoders, method.build_heads(dims, spec.num_classes)
    data = spec.build("train", None, True, cfg.data)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    ctx = cpu_context(model, spec, opt, epochs=5)
    return method, model, ctx, data


@pytest.mark.parametrize("dataset", ["mfeat", "mfeat3"])
def test_shortcut_masked_passes_equal_naive_passes_in_values_and_gradients(dataset):
    method, model, _, data = _setup(dataset)
    batch = data.batch(torch.arange(24))
    model.train()
    with torch.no_grad():  # give BN non-trivial running statistics
        for _ in range(3):
            method.encode(model, data.batch(torch.randperm(len(data))[:32]))
    model.eval()
    grads = []
    outs = []
    for naive in (False, True):
        model.zero_grad()
        out = coalition_outputs(model, batch, method.modalities, naive=naive)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outs.append(out.detach())
        grads.append([p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)
    for g0, g1 in zip(*grads):
        torch.testing.assert_close(g0, g1, atol=1e-4, rtol=1e-3)  # summation order differs


def test_training_step_leaves_bn_statistics_untouched_by_masked_passes():
    method, model, ctx, data = _setup()
    batch = data.batch(torch.arange(32))
    ref = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    with torch.no_grad():  # what one train-mode full pass alone does to the statistics
        method.encode(model, batch)
    expected = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model.load_state_dict({**model.state_dict(), **ref})
    method.training_step(model, batch, ctx)
    for k, v in model.state_dict().items():
        if "running" in k:
            torch.testing.assert_close(v, expected[k], msg=k)
    assert model.training


def test_predict_returns_fusion_and_responses_that_sum_to_it():
    method, model, _, data = _setup("mfeat3")
    model.eval()
    out = method.predict(model, data.batch(torch.arange(16)))
    assert set(out) == {"fusion", "image", "fourier", "morph"}
    torch.testing.assert_close(out["image"] + out["fourier"] + out["morph"], out["fusion"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("policy", ["persist", "reset"])
def test_scale_after_window_persists_or_resets(policy):
    method, model, ctx, data = _setup(params={"window_end": 1, "scale_after_window": policy})
    ctx.start_epoch(0)  # 1-indexed epoch 1: inside the window
    for step in range(3):
        method.training_step(model, data.batch(torch.arange(step * 16, step * 16 + 16)), ctx)
        ctx.global_step += 1
    last_in_window = method.scale.clone()
    assert not torch.allclose(last_in_window, torch.ones(2, dtype=last_in_window.dtype))
    ctx.start_epoch(1)  # 1-indexed epoch 2: outside
    method.training_step(model, data.batch(torch.arange(48, 64)), ctx)
    expected = last_in_window if policy == "persist" else torch.ones(2, dtype=last_in_window.dtype)
    torch.testing.assert_close(method.scale, expected)
    assert ctx.collect_diagnostics()["modulated"] == 0.0


def test_agm_runs_end_to_end_on_mfeat3_through_the_cli(tmp_path):
    run, history = cli_short_run(tmp_path, "agm", "mfeat3")
    assert json.loads((run / "result.json").read_text())["status"] == "finished"
    diag = history[-1]["diagnostics"]
    assert {
        f"{k}_{m}" for k in ("coeff", "scale", "score", "ratio") for m in ("image", "fourier", "morph")
    } <= set(diag)
    assert set(history[-1]["test"]) == {"fusion", "image", "fourier", "morph"}


@pytest.mark.slow
def test_agm_resume_equals_uninterrupted_run(tmp_path):
    cfg = resolve_config(
        "mfeat", "agm", {"epochs": 3, "data.limit_train_per_class": 10, "method.window_end": 2}
    )
    ck = resumed_checkpoints(tmp_path, cfg, stop=2)
    assert torch.equal(ck[0]["method"]["running"], ck[1]["method"]["running"])
    assert torch.equal(ck[0]["method"]["scale"], ck[1]["method"]["scale"])


def test_agm_loss_is_cross_entropy_of_the_summed_responses_of_naive_passes():
    method, model, ctx, data = _setup()
    batch = data.batch(torch.arange(32))
    ref = copy.deepcopy(model)
    with torch.no_grad():
        full = ref.heads(method.encode(ref, batch))["fusion"]  # train mode, as the step
        ref.eval()
        outputs = coalition_outputs(ref, batch, method.modalities, full=full, naive=True)
    expected = F.cross_entropy(decompose(outputs).sum(0), batch["label"])
    out = method.training_step(model, batch, ctx)
    assert out["loss"].item() == pytest.approx(expected.item(), abs=1e-5)


def test_score_chain_is_float64_as_the_official_python_floats_unless_asked_for_float32():
    """run/CREMAD_main.py keeps scores and their running means as Python floats (float64)."""
    for dtype, name in ((torch.float64, "float64"), (torch.float32, "float32")):
        method, model, ctx, data = _setup(params={"score_dtype": name})
        ctx.start_epoch(0)
        batch = data.batch(torch.arange(16))
        method.training_step(model, batch, ctx)
        assert method.running.dtype == dtype and method.scale.dtype == dtype
        if name == "float64":
            s = [float(x) for x in method.running.tolist()]  # after step 1, sbar = s_1 (from 0)
            r = [math.exp(s[1] - s[0]), math.exp(s[0] - s[1])]  # rbar = exp(0) = 1 before the step
            expected = [math.exp(1.5 * min(1.0 - r_m, 10.0)) for r_m in r]  # Python floats
            assert method.scale.tolist() == pytest.approx(expected, abs=1e-12)
