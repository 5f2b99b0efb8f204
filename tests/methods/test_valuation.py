"""valuation: every numeric case of its spec (§8), the valuation pass and the masked step against
a restatement of the official code on a real mfeat run, the plan through the harness, the
refusals, the conformance kit and resume with the plan as method state."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from _method_runs import assert_resume_equal, check_method_toml, mfeat_setup, plain_sgd

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.registry import get_dataset, get_method
from mmbench.benchmark.trainer import build_run, train_run
from mmbench.errors import ConfigError
from mmbench.methods.heads import ConcatHead
from mmbench.methods.valuation import (
    coalitions,
    copies,
    modality_level_extra,
    sample_plan,
    shapley,
)

ATOL = 1e-6
Y = torch.tensor([0, 1, 2, 0])
PA = torch.tensor([[1.0, 0], [0, 1], [1, 1], [0.2, 0]])
PV = torch.tensor([[0.0, 1], [1, 0], [0.5, 0.5], [0, 0.3]])


def _head():
    h = ConcatHead([2, 2], 3, ("a", "v"), init="torch")
    with torch.no_grad():
        h.fc.weight.copy_(torch.tensor([[2, 0, 0, 1], [0, 2, 1, 0], [0.5, 0.5, 0.5, 0.5]]))
        h.fc.bias.copy_(torch.tensor([0, 0, 0.1]))
    return h


def _coalition_logits(h, s):
    k = torch.zeros(4, 2)
    k[:, list(s)] = 1
    return h.fc(torch.cat([PA * k[:, :1], PV * k[:, 1:]], 1))


# ----------------------------------------------------------------------------- spec §8
def test_coalition_logits_contributions_copies_and_plan_of_the_spec():
    h = _head()
    want = {
        (0, 1): [[3, 0, 1.1], [0, 3, 1.1], [2.5, 2.5, 1.6], [0.7, 0, 0.35]],
        (0,): [[2, 0, 0.6], [0, 2, 0.6], [2, 2, 1.1], [0.4, 0, 0.2]],
        (1,): [[1, 0, 0.6], [0, 1, 0.6], [0.5, 0.5, 0.6], [0.3, 0, 0.25]],
    }
    correct = {}
    with torch.no_grad():
        for s, z in want.items():
            got = _coalition_logits(h, s)
            torch.testing.assert_close(got, torch.tensor(z), atol=ATOL, rtol=0)
            correct[s] = got.argmax(1) == Y
    assert [correct[s].int().tolist() for s in ((0, 1), (0,), (1,))] == [
        [1, 1, 0, 1],
        [1, 1, 0, 1],
        [1, 1, 1, 1],
    ]
    phi = shapley(correct, 2)
    assert phi.tolist() == [[1, 1], [1, 1], [-0.5, 0.5], [1, 1]]
    n = copies(phi)
    assert n.tolist() == [[0, 0], [0, 0], [3, 1], [0, 0]]
    plan = sample_plan(n)
    assert len(plan.positions) == 8
    items = sorted(zip(plan.positions.tolist(), map(tuple, plan.keep.int().tolist())))
    assert items == sorted([(i, (1, 1)) for i in range(4)] + [(2, (1, 0))] * 3 + [(2, (0, 1))])


def test_threshold_edges_are_strict():
    phi = torch.tensor([[-0.5], [0], [0.4], [0.5], [0.9], [1], [1.5]])
    assert copies(phi).flatten().tolist() == [3, 2, 0, 1, 1, 0, 0]


def test_masked_loss_of_the_spec():
    h = _head()
    keep = torch.tensor([[1, 1], [1, 0], [0, 1], [1, 1]]).float()
    z = h.fc(torch.cat([PA * keep[:, :1], PV * keep[:, 1:]], 1))
    assert F.cross_entropy(z, Y).item() == pytest.approx(0.581843, abs=ATOL)


@pytest.mark.parametrize("func,extra", [("linear", 399), ("tanh", 379), ("square", 252)])
def test_modality_level_extra_items(func, extra):
    assert modality_level_extra(0.9, 0.3, 1000, 1.0, func) == (extra, 1)  # all keep video only


def test_three_modalities_shapley():
    w = torch.tensor([[0, 2, -1.5], [1, 0, 0]])
    correct = {}
    for s in coalitions(3):
        f = torch.zeros(3)
        f[list(s)] = 1
        correct[s] = ((w @ f).argmax() == 0).view(1)
    assert [s for s in coalitions(3) if correct[s]] == [(1,), (0, 1), (1, 2)]
    phi = shapley(correct, 3)
    torch.testing.assert_close(phi, torch.tensor([[-0.5, 1, -0.5]], dtype=torch.float64))
    assert copies(phi).tolist() == [[3, 0, 3]]
    assert shapley(correct, 3, "indicator").sum().item() == pytest.approx(0.0)  # the full set is wrong


# ----------------------------------------------------------------------------- on mfeat
def test_masked_step_equals_the_official_step():
    method, model, batch, ctx = mfeat_setup("valuation")
    ctx.optimizers = plain_sgd(model, lr=1.0)
    a, v = method.modalities
    keep = torch.zeros(len(batch["label"]), 2, dtype=torch.bool)
    keep[::2] = True
    keep[1::2, 0] = True
    batch = {**batch, "keep": keep}
    ref = copy.deepcopy(model)
    fa, fv = ref.encoders[a](batch[a]), ref.encoders[v](batch[v])  # models.py:61-72 restated
    z = ref.heads.fc(torch.cat([fa * keep[:, :1].float(), fv * keep[:, 1:].float()], 1))
    F.cross_entropy(z, batch["label"]).backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    method.training_step(model, batch, ctx)
    for n, p in ref.named_parameters():
        torch.testing.assert_close(
            before[n] - dict(model.named_parameters())[n].detach(), p.grad, atol=1e-6, rtol=1e-4, msg=n
        )


def test_valuation_pass_values_every_train_position_and_makes_the_next_epochs_plan():
    cfg = resolve_config(
        "mfeat",
        "valuation",
        {"data.limit_train_per_class": 10, "epochs": 3, "method.warmup": 1},
        device="cpu",
    )
    run = build_run(cfg, get_dataset("mfeat"), get_method("valuation"), None, torch.device("cpu"))
    ctx, model, method = run.ctx, run.model, run.method
    ctx.start_epoch(0)
    method.on_epoch_end(ctx)
    data = run.train_loader.dataset
    with torch.no_grad():  # the official pass restated: every sample once, eval mode, coalitions
        model.eval()
        fa, fv = (model.encoders[m](data.tensors[m]) for m in method.modalities)
        model.train()
        corr = {}
        for s in coalitions(2):
            ka, kv = float(0 in s), float(1 in s)
            corr[s] = model.heads.fc(torch.cat([fa * ka, fv * kv], 1)).argmax(1) == data.labels
    want = sample_plan(copies(shapley(corr, 2)))
    assert torch.equal(method.plan.positions, want.positions) and torch.equal(method.plan.keep, want.keep)
    assert method.item_plan(ctx) is method.plan
    ctx.start_epoch(2)
    method.on_epoch_end(ctx)
    assert method.plan is None  # no plan after the last epoch


@pytest.mark.slow
def test_plan_trains_through_the_harness(tmp_path):
    cfg = resolve_config(
        "mfeat",
        "valuation",
        {"data.limit_train_per_class": 10, "epochs": 3, "method.warmup": 1},
        device="cpu",
    )
    train_run(cfg, tmp_path, progress=False, echo=lambda *_: None)
    hist = [
        json.loads(x)
        for x in (tmp_path / "mfeat" / cfg.run_name / "seed-0" / "history.jsonl").read_text().splitlines()
    ]
    n = 100
    assert "single_modality_items" not in hist[0]["diagnostics"]
    assert hist[0]["diagnostics"]["plan_items"] >= n and "single_modality_items" in hist[1]["diagnostics"]
    assert "plan_items" not in hist[2]["diagnostics"]


def test_valuation_refusals():
    with pytest.raises(
        ConfigError, match="valuation level=modality supports exactly 2 modalities; mfeat3 has 3"
    ):
        resolve_config("mfeat3", "valuation", {"method.level": "modality"})
    with pytest.raises(ConfigError, match="value"):
        resolve_config("mfeat", "valuation", {"method.value": "loo"})
    resolve_config("mfeat3", "valuation")  # the sample level runs on three modalities


def test_valuation_settings_carry_sources_and_official_setup():
    check_method_toml("valuation")
    cfg = resolve_config("kinetics_sounds", "valuation", {"protocol": "official"})
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.epochs) == ("adam", 5e-5, 60)


@pytest.mark.slow
@pytest.mark.parametrize("level", ["sample", "modality"])
def test_valuation_resume_with_a_plan_equals_uninterrupted_run(tmp_path, level):
    assert_resume_equal(
        tmp_path,
        "mfeat",
        "valuation",
        {"epochs": 4, "data.limit_train_per_class": 10, "method.warmup": 1, "method.level": level},
        [2],
    )
