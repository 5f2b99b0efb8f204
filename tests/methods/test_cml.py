"""cml (specs/methods/cml.md): every numeric case of §8 (values and gradients), the training step
against a restatement of the official MIWAE loss on real mfeat and mfeat3 batches with the orders
drawn from the method's stream, the flags, the settings, the conformance kit and exact resume."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from _method_runs import assert_resume_equal, check_method_toml, cli_short_run, mfeat_setup, plain_sgd

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.registry import get_method
from mmbench.benchmark.seeding import stream_generator
from mmbench.errors import ConfigError
from mmbench.methods.cml import nested_logits, rank_penalty, removal_orders
from mmbench.testing import check_method

ATOL = 1e-6
W = torch.tensor([[1, 0, 0.5, 0], [0, 1, 0, 0.5], [0.5, 0.5, 0.5, 0.5]])
B = torch.tensor([0.2, -0.2, 0.0])
PHI_A = torch.tensor([[1, 0.5], [0.2, 0.1]])
PHI_V = torch.tensor([[0.3, 0.2], [0.1, 0.4]])
Y = torch.tensor([0, 1])


def _base_case():
    parts = [PHI_A @ W[:, :2].T, PHI_V @ W[:, 2:].T]
    order = torch.tensor([[0, 1], [1, 0]])  # sample 0 removes a first (keeps v), sample 1 keeps a
    return nested_logits(parts, B, order)


def test_base_case_nested_logits_confidences_and_losses():
    z0, z1 = _base_case()
    torch.testing.assert_close(z0, torch.tensor([[1.35, 0.4, 1.0], [0.45, 0.1, 0.4]]), atol=ATOL, rtol=0)
    torch.testing.assert_close(z1, torch.tensor([[0.35, -0.1, 0.25], [0.4, -0.1, 0.15]]), atol=ATOL, rtol=0)
    c0, p0 = F.softmax(z0, 1).max(1)
    c1, p1 = F.softmax(z1, 1).max(1)
    assert c0.tolist() == pytest.approx([0.478142, 0.376518], abs=ATOL) and p0.tolist() == [0, 0]
    assert c1.tolist() == pytest.approx([0.393319, 0.419229], abs=ATOL) and p1.tolist() == [0, 0]
    ce = (F.cross_entropy(z0, Y) + F.cross_entropy(z1, Y)) / 2
    assert ce.item() == pytest.approx(1.091778, abs=ATOL)
    for rule, r_want, l_want in (
        ("miwae", 0.042711, 1.096049),
        ("cpm", 0.042711, 1.096049),
        ("bmm", 0.0, 1.091778),
    ):
        r, _ = rank_penalty(z0, z1, Y, rule)
        assert r.item() == pytest.approx(r_want, abs=ATOL), rule
        assert (ce + 0.1 * r).item() == pytest.approx(l_want, abs=ATOL), rule


PAIR_MORE = [[2.0, 0.0], [0.0, 1.0], [0.0, 0.5]]
PAIR_FEWER = [[3.0, 0.0], [2.0, 0.0], [0.0, 2.0]]


@pytest.mark.parametrize(
    "rule,eps,r_want,g_more,g_fewer",
    [
        (
            "miwae",
            0.0,
            0.330115,
            [[-0.104994, 0.104994], [0, 0], [0, 0]],
            [[0.045177, -0.045177], [0, 0], [-0.104994, 0.104994]],
        ),
        (
            "cpm",
            0.0,
            0.330115,
            [[-0.104994, 0.104994], [0, 0], [0.235004, -0.235004]],
            [[0.045177, -0.045177], [0, 0], [-0.104994, 0.104994]],
        ),
        (
            "bmm",
            0.0,
            0.479853,
            [[-0.104994, 0.104994], [0.196612, -0.196612], [0.235004, -0.235004]],
            [[0.045177, -0.045177], [0.104994, -0.104994], [-0.104994, 0.104994]],
        ),
        ("miwae", 0.1, 0.158338, None, None),
    ],
)
def test_one_pair_penalty_and_its_gradients(rule, eps, r_want, g_more, g_fewer):
    zm = torch.tensor(PAIR_MORE, requires_grad=True)
    zf = torch.tensor(PAIR_FEWER, requires_grad=True)
    y = torch.tensor([0, 0, 0])
    r, _ = rank_penalty(zm, zf, y, rule, eps)
    assert r.item() == pytest.approx(r_want, abs=ATOL)
    if g_more is None:
        return
    r.backward()
    torch.testing.assert_close(zm.grad, torch.tensor(g_more), atol=ATOL, rtol=0)
    torch.testing.assert_close(zf.grad, torch.tensor(g_fewer), atol=ATOL, rtol=0)


def test_mean_reduction_divides_by_the_batch():
    zm, zf, y = torch.tensor(PAIR_MORE), torch.tensor(PAIR_FEWER), torch.tensor([0, 0, 0])
    assert rank_penalty(zm, zf, y, reduction="mean")[0].item() == pytest.approx(0.330115 / 3, abs=ATOL)


def test_three_modalities():
    phis = [torch.tensor([[1.0], [0.5]]), torch.tensor([[2.0], [0.0]]), torch.tensor([[-1.0], [1.0]])]
    w = torch.tensor([[1, 0.5, 2], [0, 1, -1]])
    b = torch.tensor([0.3, -0.6])
    y = torch.tensor([1, 0])
    parts = [phis[m] @ w[:, m : m + 1].T for m in range(3)]
    zs = nested_logits(parts, b, torch.tensor([[0, 2, 1], [1, 2, 0]]))
    want = [[[0.3, 2.4], [2.8, -1.6]], [[-0.7, 2.4], [2.8, -1.6]], [[1.3, 1.4], [0.8, -0.6]]]
    for z, w_ in zip(zs, want):
        torch.testing.assert_close(z, torch.tensor(w_), atol=ATOL, rtol=0)
    ce = sum(F.cross_entropy(z, y) for z in zs) / 3
    r = sum(rank_penalty(zs[k], zs[k + 1], y)[0] for k in range(2))
    assert ce.item() == pytest.approx(0.174800, abs=ATOL)
    assert r.item() == pytest.approx(0.065990, abs=ATOL)
    assert (ce + 0.1 * r).item() == pytest.approx(0.181399, abs=ATOL)


def test_removal_orders_are_permutations_from_the_stream():
    g = stream_generator(0, "cml/order", 3)
    o = removal_orders(64, 3, g, "cpu")
    assert all(sorted(row) == [0, 1, 2] for row in o.tolist())
    assert len({tuple(r) for r in o.tolist()}) == 6  # all 3! orders occur over 64 samples
    assert torch.equal(o, removal_orders(64, 3, stream_generator(0, "cml/order", 3), "cpu"))


# ----------------------------------------------------------------------------- official step, restated
def _official_loss(model, batch, modalities, order, lam=0.1):
    """miwae/train.py:286-304 on late-fusion logits: masks from the removal orders
    (get_multi_mask), every nested input's CE averaged, the sign-ruled hinge summed over samples
    and pairs, one sample at a time as python code."""
    feats = [model.encoders[m](batch[m]) for m in modalities]
    w, b = model.heads.fc.weight, model.heads.fc.bias
    dims = [f.shape[1] for f in feats]
    starts = [sum(dims[:m]) for m in range(len(dims))]
    y = batch["label"]
    n, M = len(y), len(modalities)
    zs = []
    for k in range(M):
        rows = []
        for i in range(n):
            removed = set(order[i][:k])
            z = b.clone()
            for m in range(M):
                if m not in removed:
                    z = z + w[:, starts[m] : starts[m] + dims[m]] @ feats[m][i]
            rows.append(z)
        zs.append(torch.stack(rows))
    loss = sum(F.cross_entropy(z, y) for z in zs) / M
    rank = 0.0
    for k in range(M - 1):
        pm, pf = F.softmax(zs[k], 1), F.softmax(zs[k + 1], 1)
        for i in range(n):
            cm, cf = pm[i].max(), pf[i].max()
            ym, yf = int(pm[i].argmax()), int(pf[i].argmax())
            if ym == int(y[i]):
                rank = rank + F.relu(cf - cm)
            elif yf != int(y[i]):
                rank = rank + F.relu(cf - cm.detach())
    return loss + lam * rank


@pytest.mark.parametrize("dataset", ["mfeat", "mfeat3"])
def test_step_equals_the_official_computation(dataset):
    meth, model, batch, ctx = mfeat_setup("cml", dataset=dataset)
    ctx.optimizers = plain_sgd(model, lr=1.0)
    ctx.global_step = 7
    M = len(meth.modalities)
    order = removal_orders(len(batch["label"]), M, stream_generator(0, "cml/order", 7), "cpu").tolist()
    ref = copy.deepcopy(model)
    loss_ref = _official_loss(ref, batch, meth.modalities, order)
    loss_ref.backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = meth.training_step(model, batch, ctx)
    assert out["loss"].item() == pytest.approx(loss_ref.item(), abs=1e-5)
    for (n, p), (_, pr) in zip(model.named_parameters(), ref.named_parameters()):
        want = pr.grad if pr.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(before[n] - p.detach(), want, atol=1e-5, rtol=1e-4, msg=n)


def test_per_epoch_order_is_shared_by_all_samples_and_fixed_within_the_epoch():
    meth, model, batch, ctx = mfeat_setup("cml", dataset="mfeat3", params={"order": "per_epoch"})
    o1 = meth.orders(8, ctx, "cpu")
    ctx.global_step += 5
    assert torch.equal(o1, meth.orders(8, ctx, "cpu")) and len({tuple(r) for r in o1.tolist()}) == 1
    meth2, _, _, _ = mfeat_setup("cml", dataset="mfeat3", params={"order": "per_sample"})
    assert len({tuple(r) for r in meth2.orders(64, ctx, "cpu").tolist()}) > 1


def test_cls_on_partial_false_keeps_only_the_full_input_ce():
    meth, model, batch, ctx = mfeat_setup("cml", params={"cls_on_partial": False, "lam": 0.0})
    ctx.optimizers = plain_sgd(model, lr=0.0)
    out = meth.training_step(model, batch, ctx)
    feats = meth.encode(model, batch)
    want = F.cross_entropy(model.heads(feats)["fusion"], batch["label"])
    assert out["loss"].item() == pytest.approx(want.item(), abs=1e-5)


def test_unknown_flag_values_are_refused():
    for key, value in (("sign_rule", "pairwise"), ("reduction", "max"), ("order", "fixed")):
        with pytest.raises(ConfigError, match=key):
            resolve_config("mfeat", "cml", {f"method.{key}": value})


def test_settings_have_sources():
    check_method_toml("cml")


@pytest.mark.slow
def test_runs_through_the_cli_and_logs_confidences(tmp_path):
    run, history = cli_short_run(tmp_path, "cml", dataset="mfeat3")
    assert json.loads((run / "result.json").read_text())["status"] == "finished"
    d = history[-1]["diagnostics"]
    assert {"confidence_0", "confidence_1", "confidence_2", "penalised"} <= set(d)
    assert history[-1]["train"]["rank"] >= 0


@pytest.mark.slow
def test_conformance_kit():
    report = check_method(get_method("cml"))
    assert set(report.passed) == {"mfeat", "mfeat3"}


@pytest.mark.slow
def test_per_epoch_order_resume_equals_an_uninterrupted_run(tmp_path):
    overrides = {"epochs": 3, "data.limit_train_per_class": 10, "method.order": "per_epoch"}
    assert_resume_equal(tmp_path, "mfeat3", "cml", overrides, [1])
