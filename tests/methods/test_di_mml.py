"""di_mml: every numeric case of its spec (§8), the stage-1 step against a restatement of the
official ``main_CFT.py`` step on real mfeat batches, the two stages through the real harness
(frozen encoders, fresh optimiser, non-selectable stage-1 epochs), refusals, kit and resume."""

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from _method_runs import assert_resume_equal, check_method_toml, mfeat_setup, plain_sgd

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.trainer import Interrupted, train_run
from mmbench.errors import ConfigError
from mmbench.methods.di_mml import DIMML, certainty_fusion, duc_loss, duc_sets, effective_dims

ATOL = 1e-6
PA = torch.tensor(
    [
        [1, 0, 0.2, 0.5],
        [0.9, 0.1, 0.1, 0.4],
        [1.1, 0, 0.3, 0.6],
        [0, 1, 0.2, 0.5],
        [0.1, 0.9, 0.3, 0.4],
        [0, 1.1, 0.1, 0.6],
    ]
)
PV = torch.tensor(
    [
        [0.5, 0.5, 1, 0],
        [0.4, 0.6, 0.9, 0.1],
        [0.6, 0.4, 1.1, 0],
        [0.5, 0.5, 0, 1],
        [0.6, 0.4, 0.1, 0.9],
        [0.4, 0.6, 0, 1.1],
    ]
)


# ----------------------------------------------------------------------------- spec §8
def test_effective_dimension_sets():
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    assert duc_sets({"a": PA, "v": PV}, y, 2, "a", "v") == ([0, 1], [2, 3])
    # an absent class is skipped (the official 0/0 centre would be NaN)
    assert effective_dims(PA, y, 3).tolist() == effective_dims(PA, y, 2).tolist()


def test_duc_loss_value_gradients_and_detached_targets():
    a, v = PA[:3].clone().requires_grad_(), PV[:3].clone().requires_grad_()
    loss = duc_loss(a, v, [0, 1], [2, 3], 1.0)
    loss.backward()
    assert loss.item() == pytest.approx(2.184308, abs=ATOL)
    torch.testing.assert_close(
        a.grad,
        torch.tensor([[0, 0, -0.000112, 0.011259], [0, 0, 0.03311, -0.022036], [0, 0, -0.033333, 0.011222]]),
        atol=ATOL,
        rtol=0,
    )
    torch.testing.assert_close(
        v.grad,
        torch.tensor([[0.00056, 0.010924, 0, 0], [0.033558, -0.022224, 0, 0], [-0.032439, 0.010741, 0, 0]]),
        atol=ATOL,
        rtol=0,
    )
    assert duc_loss(PA[:3], PV[:3], [0, 1], [2, 3], 50.0).item() == pytest.approx(2.196958, abs=ATOL)
    a = PA[:3].clone().requires_grad_()
    empty = duc_loss(a, PV[:3], [], [], 50.0)
    assert empty.item() == pytest.approx(2 * math.log(3), abs=ATOL)
    empty.backward()
    assert not a.grad.any()


def test_stage1_loss_of_the_spec():
    y = torch.tensor([0, 1])
    ce = F.cross_entropy
    za, zv = torch.tensor([[2.0, 0], [0, 1]]), torch.tensor([[0.5, 0], [0, 0.2]])
    ga, gv = torch.tensor([[1.0, 0], [0, 0.5]]), torch.tensor([[0.0, 0], [1, 0]])
    loss = ce(za, y) + ce(zv, y) + 1.0 * (ce(ga, y) + ce(gv, y)) + 0.3
    assert loss.item() == pytest.approx(2.453077, abs=ATOL)


def test_certainty_fusion_weights_and_logits():
    za, zv, zf = (
        torch.tensor([[2.0, 0], [0, 1]]),
        torch.tensor([[0.5, 0], [0, 0.2]]),
        torch.tensor([[1.0, 1], [0, 3]]),
    )
    z = torch.stack([za, zv, zf])
    w = F.softmax(F.softmax(z, 2).amax(2), 0)
    torch.testing.assert_close(
        w, torch.tensor([[0.407224, 0.324442], [0.314513, 0.270665], [0.278263, 0.404893]]), atol=ATOL, rtol=0
    )
    torch.testing.assert_close(
        certainty_fusion([za, zv, zf], 1.0),
        torch.tensor([[1.249967, 0.278263], [0, 1.593254]]),
        atol=ATOL,
        rtol=0,
    )
    torch.testing.assert_close(
        certainty_fusion([za, zv, zf], 3.0),
        torch.tensor([[1.193424, 0.314762], [0, 1.463935]]),
        atol=ATOL,
        rtol=0,
    )


# ----------------------------------------------------------------------------- step on mfeat
def test_stage1_step_equals_the_official_step_on_mfeat():
    method, model, batch, ctx = mfeat_setup("di_mml", params={"stage2_epochs": 1})
    ctx.optimizers = plain_sgd(model, lr=1.0)
    ctx.epoch, ctx.epochs = 5, 20
    method.s_a, method.s_v = list(range(0, 40)), list(range(60, 128))
    a, v = method.modalities
    ref = copy.deepcopy(model)
    y = batch["label"]
    pa, pv = ref.encoders[a](batch[a]), ref.encoders[v](batch[v])
    ce = F.cross_entropy
    loss = ce(ref.heads.own[a](pa), y) + ce(ref.heads.own[v](pv), y)
    loss = loss + 1.0 * (ce(ref.heads.shared(pa), y) + ce(ref.heads.shared(pv), y))
    # contrast_loss.py restated: exp-normalised dot products on the dimension subsets, detached keys
    sa, sv = method.s_a, method.s_v
    sim_v = torch.exp(pv[:, sa] @ pa[:, sa].detach().t() / 50.0)
    sim_a = torch.exp(pa[:, sv] @ pv[:, sv].detach().t() / 50.0)
    duc = -(torch.log(sim_v.diag() / sim_v.sum(1))).mean() - (torch.log(sim_a.diag() / sim_a.sum(1))).mean()
    (loss + duc).backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = method.training_step(model, batch, ctx)
    assert out["loss"].item() == pytest.approx((loss + duc).item(), rel=1e-5)
    for n, p in ref.named_parameters():
        want = p.grad if p.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(
            before[n] - dict(model.named_parameters())[n].detach(), want, atol=1e-6, rtol=1e-4, msg=n
        )


# ----------------------------------------------------------------------------- stages in the harness
STAGES = {
    "epochs": 4,
    "data.limit_train_per_class": 10,
    "method.duc_start_epoch": 1,
    "method.stage2_epochs": 2,
}


@pytest.mark.slow
def test_two_stages_through_the_harness(tmp_path):
    cfg = resolve_config("mfeat", "di_mml", STAGES, device="cpu")
    with pytest.raises(Interrupted):
        train_run(cfg, tmp_path / "cut", progress=False, stop_after_epochs=2, echo=lambda *_: None)
    mid = torch.load(tmp_path / "cut" / "mfeat" / cfg.run_name / "seed-0" / "last.ckpt", weights_only=False)
    res = train_run(cfg, tmp_path / "full", progress=False, echo=lambda *_: None)
    run = tmp_path / "full" / "mfeat" / cfg.run_name / "seed-0"
    hist = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["selectable"] for h in hist] == [False, False, True, True]
    assert [h["diagnostics"]["stage"] for h in hist] == [1, 1, 2, 2]
    assert "loss_duc" not in hist[0]["train"] and "loss_duc" in hist[1]["train"]
    assert hist[1]["diagnostics"]["duc_dims_a"] + hist[1]["diagnostics"]["duc_dims_v"] > 0
    assert res["selection"]["val"]["epoch"] in (2, 3)
    last = torch.load(run / "last.ckpt", weights_only=False)
    for k, t in mid["model"].items():  # stage 2 moved only the fusion head (and its switch)
        same = torch.equal(t, last["model"][k])
        assert same == (not k.startswith("heads.fusion")), k
    assert len(last["optimizers"]["optimizers"]["main"]["param_groups"][0]["params"]) == 2  # f only
    assert not mid["model"]["heads.fusion_on"] and last["model"]["heads.fusion_on"]


def test_stage2_train_mode_keeps_encoders_and_own_heads_in_eval_mode():
    method, model, batch, ctx = mfeat_setup("di_mml", params={"stage2_epochs": 1})
    ctx.epochs, ctx.epoch = 20, 19  # stage 2: epochs 19 .. 19 (stage2_epochs = 1)
    method.train_mode(model, ctx)
    assert not model.encoders.training and not model.heads.own.training and model.heads.fusion.training
    ctx.epoch = 0
    method.train_mode(model, ctx)
    assert all(mod.training for mod in model.modules())


def test_di_mml_refusals():
    with pytest.raises(ConfigError, match="at most 2 modalities"):
        resolve_config("mfeat3", "di_mml")
    with pytest.raises(ConfigError, match="duc_dims"):
        resolve_config("mfeat", "di_mml", {"method.duc_dims": "never"})
    with pytest.raises(ValueError, match="di_mml supports exactly 2 modalities; got 3"):
        DIMML(DIMML.Hyper(), ("a", "b", "c"), 3, {"a": 2, "b": 2, "c": 2}).build_heads(
            {"a": 2, "b": 2, "c": 2}, 3
        )
    method, model, _, ctx = mfeat_setup("di_mml", params={"stage2_epochs": 1})
    method.hp.stage2_epochs = 3
    with pytest.raises(ConfigError, match="no stage-1 epoch"):
        method.configure_optimizers(model, resolve_config("mfeat", "di_mml", {"epochs": 3}).train)


def test_di_mml_settings_carry_sources_and_official_setup():
    check_method_toml("di_mml")
    cfg = resolve_config("cremad", "di_mml", {"protocol": "official"})
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.method_params["stage2_epochs"]) == (170, 16, 20)


@pytest.mark.slow
def test_di_mml_resume_inside_each_stage_equals_uninterrupted_run(tmp_path):
    assert_resume_equal(tmp_path, "mfeat", "di_mml", STAGES, [1, 2])
