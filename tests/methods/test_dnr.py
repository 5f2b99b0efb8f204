"""dnr: every numeric case of its spec (§8), the diagnosis and re-learning against a restatement
of the official ``ours.py`` on a real mfeat run, the flags, the conformance kit and resume."""

import math

import numpy as np
import pytest
import torch
from _method_runs import assert_resume_equal, check_method_toml
from sklearn.cluster import KMeans
from sklearn.preprocessing import MinMaxScaler

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.registry import get_dataset, get_method
from mmbench.benchmark.trainer import build_run
from mmbench.errors import ConfigError
from mmbench.methods.dnr import (
    blend_toward,
    is_reinit_epoch,
    kmeans_purity,
    minmax_scale,
    purity,
    relearn_strength,
)

ATOL = 1e-6


# ----------------------------------------------------------------------------- spec §8
def test_purity_of_a_given_assignment():
    assert purity([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]) == pytest.approx(0.666667, abs=ATOL)


def test_scaling_to_minus_one_one_with_a_constant_column():
    np.testing.assert_allclose(
        minmax_scale(np.array([[1.0, 5], [3, 5], [2, 5]])), [[-1, -1], [1, -1], [0, -1]]
    )
    x = np.random.default_rng(0).normal(size=(20, 4))
    np.testing.assert_allclose(
        minmax_scale(x), MinMaxScaler(feature_range=(-1, 1)).fit_transform(x), atol=1e-12
    )


def test_full_diagnosis_of_the_spec():
    ftr = np.array([[0, 0], [0.1, 0], [0, 0.1], [10, 10], [10.1, 10], [10, 10.1]])
    fva = np.array([[0, 0], [0.1, 0], [10, 10], [10.1, 10]])
    p_d = kmeans_purity(ftr, np.array([0, 0, 1, 1, 1, 1]), 2)
    p_v = kmeans_purity(fva, np.array([0, 1, 0, 1]), 2)
    assert (p_d, p_v) == pytest.approx((0.833333, 0.5), abs=ATOL)
    assert abs(p_d - p_v) == pytest.approx(0.333333, abs=ATOL)
    assert relearn_strength(p_d, p_v, 3) == pytest.approx(0.761594, abs=ATOL)


@pytest.mark.parametrize("gap,alpha", [(0, 0), (0.05, 0.148885), (0.1, 0.291313), (0.3, 0.716298)])
def test_strength_for_lambda_3(gap, alpha):
    assert relearn_strength(0.5 + gap, 0.5, 3) == pytest.approx(alpha, abs=ATOL)


def test_blend_toward_the_initial_weights():
    p = torch.nn.Parameter(torch.tensor([1.0, -2, 0.5]))
    blend_toward([p], [torch.tensor([0.0, 1, 1])], 0.761594)
    torch.testing.assert_close(p.detach(), torch.tensor([0.238406, 0.284782, 0.880797]), atol=ATOL, rtol=0)


def test_schedule():
    assert [e for e in range(90) if is_reinit_epoch(e, 20, 3)] == [20, 40, 60]
    assert [e for e in range(100) if is_reinit_epoch(e, 15, 2)] == [15, 30]
    assert not is_reinit_epoch(0, 1, 5)


# ----------------------------------------------------------------------------- on a real run
def _run(params=None):
    overrides = {"data.limit_train_per_class": 10, "epochs": 3, "method.reinit_epoch": 1, **(params or {})}
    cfg = resolve_config("mfeat", "dnr", overrides, device="cpu")
    return build_run(cfg, get_dataset("mfeat"), get_method("dnr"), None, torch.device("cpu"))


def _official_diagnosis(run, initial):
    """ours.py:99-166 restated: features of train and val in eval mode, MinMaxScaler(-1, 1) and
    KMeans(K, random_state=0) per (split, modality), majority purity, tanh blend of every encoder
    parameter toward its initial value."""
    model, k = run.model, run.method.num_classes
    model.eval()
    expected = {}
    with torch.no_grad():
        for m in run.ctx.modalities:
            pur = []
            for ds in (run.train_loader.dataset, run.val_loader.dataset):
                f = model.encoders[m](ds.tensors[m]).numpy().astype(np.float64)
                c = KMeans(n_clusters=k, random_state=0, n_init=10).fit_predict(
                    MinMaxScaler(feature_range=(-1, 1)).fit_transform(f)
                )
                y = ds.labels.numpy()
                pur.append(sum(np.bincount(y[c == j]).max() for j in np.unique(c)) / len(y))
            a = math.tanh(3.0 * abs(pur[0] - pur[1]))
            expected[m] = {
                n: a * initial[m][n] + (1 - a) * p.detach() for n, p in model.encoders[m].named_parameters()
            }
            expected[m]["alpha"] = a
    model.train()
    return expected


@pytest.mark.slow
def test_diagnosis_and_relearning_equal_the_official_code_on_a_real_run():
    run = _run()
    initial = run.ctx.initial_encoder_state()
    with torch.no_grad():  # as if trained: away from the initial weights
        for p in run.model.encoders.parameters():
            p.add_(0.05 * torch.randn_like(p))
    heads = {k: v.clone() for k, v in run.model.heads.state_dict().items()}
    expected = _official_diagnosis(run, initial)
    run.ctx.start_epoch(2)
    run.method.on_epoch_start(run.ctx)  # after epoch 1, as the first act of epoch 2
    logs = run.ctx.collect_diagnostics()
    for m in run.ctx.modalities:
        assert logs[f"alpha_{m}"] == pytest.approx(expected[m]["alpha"], abs=1e-12)
        assert 0 < logs[f"alpha_{m}"] < 1
        for n, p in run.model.encoders[m].named_parameters():
            torch.testing.assert_close(p.detach(), expected[m][n], atol=1e-6, rtol=1e-5)
    assert all(torch.equal(heads[k], v) for k, v in run.model.heads.state_dict().items())  # head untouched


@pytest.mark.slow
def test_no_diagnosis_outside_the_schedule_and_before_eval_flag_moves_it():
    run = _run({"method.reinit_epoch": 2})
    before = [p.clone() for p in run.model.parameters()]
    for e in (1, 2):
        run.ctx.start_epoch(e)
        run.method.on_epoch_start(run.ctx)
        run.method.before_evaluation(run.ctx)
        run.method.on_epoch_end(run.ctx)
    assert all(torch.equal(a, b) for a, b in zip(before, run.model.parameters()))
    run = _run({"method.reinit_timing": "before_eval"})
    run.ctx.start_epoch(1)
    run.method.on_epoch_start(run.ctx)
    assert "alpha_image" not in run.ctx.collect_diagnostics()
    run.method.before_evaluation(run.ctx)
    assert "alpha_image" in run.ctx.collect_diagnostics()


def test_conv_scope_blends_only_conv_parameters_and_buffers_flag():
    run = _run({"method.reinit_scope": "conv"})
    m = run.ctx.modalities[0]
    enc = run.model.encoders[m]
    before = [p.clone() for p in enc.parameters()]
    run.method.relearn(run.ctx, m, {n: torch.zeros_like(p) for n, p in enc.named_parameters()}, 0.5)
    convs = [mod for mod in enc.modules() if isinstance(mod, torch.nn.Conv2d)]
    if not convs:  # mfeat's encoders are MLPs: nothing is blended under the conv scope
        assert all(torch.equal(a, b) for a, b in zip(before, enc.parameters()))


def test_dnr_needs_a_validation_split_and_refuses_bad_flags():
    assert _run().method.needs_val()  # the harness refuses a run without a validation split
    with pytest.raises(ConfigError, match="reinit_timing"):
        resolve_config("mfeat", "dnr", {"method.reinit_timing": "never"})
    assert resolve_config("cremad", "dnr", {"protocol": "official"}).data.val_fraction == 0.1


def test_dnr_settings_carry_sources():
    check_method_toml("dnr")


@pytest.mark.slow
def test_dnr_resume_equals_uninterrupted_run(tmp_path):
    hist = assert_resume_equal(
        tmp_path,
        "mfeat",
        "dnr",
        {"epochs": 4, "data.limit_train_per_class": 10, "method.reinit_epoch": 1},
        [2],
    )
    assert [("alpha_image" in h["diagnostics"]) for h in hist] == [False, False, True, True]
