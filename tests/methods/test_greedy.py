"""Greedy (Wu et al., ICML 2022): the spec's numeric cases (MMTM, group ratio, controller, branch
loss), the step against a restatement of the official ``MMTM_MVCNN.forward`` +
``Bias_Mitigation_Strong`` on random inputs, predict, and the refusals. Conformance (with exact
resume, on a CREMA-D fixture) runs in tests/test_conformance.py."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmbench.backbones.resnet18 import AudioResNet18, FrameResNet18
from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.context import Context
from mmbench.benchmark.registry import get_dataset
from mmbench.benchmark.trainer import MultimodalModel
from mmbench.errors import ConfigError
from mmbench.methods.base import Optimizers
from mmbench.methods.greedy import MMTM, Controller, Greedy, GreedyHyper, group_ratio

ATOL = 1e-6


# --------------------------------------------------------------------------- spec section 8
def _spec_mmtm():
    mm = MMTM(2, 2, ratio=4)
    with torch.no_grad():
        mm.fc_squeeze.weight.copy_(torch.tensor([[0.5, -0.5, 0.2, 0.1], [0.1, 0.3, -0.4, 0.2]]))
        mm.fc_squeeze.bias.copy_(torch.tensor([0.1, 0.0]))
        mm.fc_excite_a.weight.copy_(torch.tensor([[1.0, -1], [0.5, 0.5]]))
        mm.fc_excite_a.bias.copy_(torch.tensor([0.0, 0.1]))
        mm.fc_excite_v.weight.copy_(torch.tensor([[-0.5, 1], [0.2, 0.2]]))
        mm.fc_excite_v.bias.copy_(torch.tensor([0.2, -0.1]))
        mm.running_avg_a.copy_(torch.tensor([0.4, 0.6]))
        mm.running_avg_v.copy_(torch.tensor([0.5, 0.5]))
        mm.count.fill_(3)
    x_a = torch.tensor([[[1.0, 3], [0, 2]], [[2, 2], [1, -1]]])
    x_v = torch.tensor([[[0.5, 0.5], [1, 0]], [[0, 2], [2, 2]]])
    return mm, x_a, x_v


def test_mmtm_regular_outputs_and_running_means_match_the_spec_case():
    mm, x_a, x_v = _spec_mmtm()
    assert mm.fc_squeeze.out_features == 2
    out_a, out_v = mm(x_a, x_v, None, update_avg=True)
    exp_a = torch.tensor(
        [[[0.586618, 1.759853], [0, 1.325244]], [[1.571670, 1.571670], [0.721115, -0.721115]]]
    )
    exp_v = torch.tensor([[[0.278007, 0.278007], [0.532454, 0]], [[0, 0.826765], [1.119427, 1.119427]]])
    assert torch.allclose(out_a, exp_a, atol=ATOL) and torch.allclose(out_v, exp_v, atol=ATOL)
    assert torch.allclose(mm.running_avg_a, torch.tensor([0.471557, 0.622967]), atol=ATOL)
    assert torch.allclose(mm.running_avg_v, torch.tensor([0.496175, 0.511521]), atol=ATOL)
    assert int(mm.count) == 4


def test_mmtm_avg_scale_bug_reproduces_the_official_running_mean_of_v():
    mm, x_a, x_v = _spec_mmtm()
    mm(x_a, x_v, None, update_avg=True, avg_scale_bug=True)
    assert torch.allclose(mm.running_avg_v, torch.tensor([0.546557, 0.547967]), atol=ATOL)


def test_mmtm_curation_caring_a_uses_the_updated_running_mean():
    mm, x_a, x_v = _spec_mmtm()
    out_a, out_v = mm(x_a, x_v, "a", update_avg=True)
    exp_a = torch.tensor(
        [[[0.471557, 1.414670], [0, 1.245934]], [[0.943113, 0.943113], [0.622967, -0.622967]]]
    )
    exp_v = torch.tensor([[[0.278007, 0.278007], [0.532454, 0]], [[0, 0.826765], [1.119427, 1.119427]]])
    assert torch.allclose(out_a, exp_a, atol=ATOL) and torch.allclose(out_v, exp_v, atol=ATOL)


def test_mmtm_without_update_leaves_the_running_means():
    mm, x_a, x_v = _spec_mmtm()
    mm(x_a, x_v, None, update_avg=False)
    assert torch.equal(mm.running_avg_a, torch.tensor([0.4, 0.6])) and int(mm.count) == 3


def test_group_ratio_matches_the_spec_case():
    ps = [
        nn.Parameter(torch.tensor([1.0, 2])),
        nn.Parameter(torch.tensor([2.0])),
        nn.Parameter(torch.tensor([1.0])),
    ]
    ps[0].grad, ps[1].grad = torch.tensor([3.0, 4]), torch.tensor([1.0])
    assert abs(group_ratio(ps).item() - 2.6) < ATOL


def test_controller_matches_the_spec_sequence():
    ctl = Controller(alpha=0.1, window=2, rebalance_start=1)
    ratios = [
        (1, 1, 1, 1),
        (2, 1, 1, 1),
        (1, 1, 1, 1),
        (9, 9, 9, 9),
        (9, 9, 9, 9),
        (1, 1, 3, 1),
        (1, 1, 5, 1),
        (9, 9, 9, 9),
    ]
    epochs = [0, 0, 1, 1, 1, 1, 1, 1]
    modes, ds = [], []
    for r, ep in zip(ratios, epochs):
        modes.append(f"on({ctl.caring})" if ctl.mode == "on" else "off")  # the mode this step's forward used
        ctl.after_backward(r if ctl.mode == "off" else None, ep)
        ds.append(ctl.d)
    assert modes == ["off", "off", "off", "on(a)", "on(a)", "off", "off", "on(v)"]
    expected = [0, 0.176091, 0.124939, 0.124939, 0.124939, -0.079181, -0.263241, -0.263241]
    assert all(abs(a - b) < ATOL for a, b in zip(ds, expected)), ds


def test_branch_loss_and_fused_prediction_match_the_spec_case():
    z_a = torch.tensor([[2.0, 0, 1], [0.5, 0.2, 0.1]])
    z_v = torch.tensor([[1.0, 1, 0], [0, 1, 0]])
    y = torch.tensor([0, 1])
    assert abs((F.cross_entropy(z_a, y) + F.cross_entropy(z_v, y)).item() - 1.500572) < ATOL
    assert torch.allclose((z_a + z_v) / 2, torch.tensor([[1.5, 0.5, 0.5], [0.25, 0.6, 0.05]]), atol=ATOL)


# --------------------------------------------------------------------------- the step, restated
def _setup(**hp):
    torch.manual_seed(0)
    encoders = nn.ModuleDict({"audio": AudioResNet18(4), "video": FrameResNet18(4)})
    hyper = GreedyHyper(**hp)
    method = Greedy(hyper, ("audio", "video"), 6, {"audio": 32, "video": 32})
    method.inspect_encoders(encoders)
    model = MultimodalModel(encoders, method.build_heads({"audio": 32, "video": 32}, 6))
    cfg = resolve_config("cremad", "greedy", {"data.preset": "smoke"}, device="cpu")
    opts = method.configure_optimizers(model, cfg.train)
    ctx = Context(
        model=model,
        optimizers=opts,
        device=torch.device("cpu"),
        train_cfg=cfg.train,
        modalities=("audio", "video"),
        num_classes=6,
        seed=0,
        epochs=3,
    )
    model.train()
    return method, model, ctx, cfg


def _batch(seed):
    g = torch.Generator().manual_seed(seed)
    return {
        "audio": torch.randn(4, 33, 17, generator=g),
        "video": torch.randn(4, 3, 2, 32, 32, generator=g),
        "label": torch.randint(6, (4,), generator=g),
    }


def _official_forward(model, batch, caring):
    """``MMTM_MVCNN.forward`` (model.py:81-108) written out on the trunk attributes, with the MMTM
    of ``balanced_mmtm.py:93-154`` (squeeze over every position, frames unfolded; running means
    updated in the forward) and the branch fcs."""
    ta, tv = model.encoders["audio"].trunk, model.encoders["video"].trunk
    b = batch["label"].shape[0]
    xa = batch["audio"].unsqueeze(1)
    xv = batch["video"].permute(0, 2, 1, 3, 4).reshape(-1, 3, 32, 32)
    t = batch["video"].shape[2]
    xa = ta.layer1(ta.maxpool(ta.relu(ta.bn1(ta.conv1(xa)))))
    xv = tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(xv)))))
    for k, (la, lv) in enumerate(
        ((ta.layer2, tv.layer2), (ta.layer3, tv.layer3), (ta.layer4, tv.layer4)), start=2
    ):
        xa, xv = la(xa), lv(xv)
        mm = model.heads.mmtm[str(k)]
        c, h, w = xv.shape[1:]
        v5 = xv.view(b, t, c, h, w).permute(0, 2, 1, 3, 4)
        s_a = xa.view(b, xa.shape[1], -1).mean(-1)
        s_v = v5.reshape(b, c, -1).mean(-1)
        exc = F.relu(F.linear(torch.cat([s_a, s_v], 1), mm.fc_squeeze.weight, mm.fc_squeeze.bias))
        e_a = torch.sigmoid(F.linear(exc, mm.fc_excite_a.weight, mm.fc_excite_a.bias))
        e_v = torch.sigmoid(F.linear(exc, mm.fc_excite_v.weight, mm.fc_excite_v.bias))
        with torch.no_grad():
            n = mm.count.float()
            mm.running_avg_a.copy_((e_a.mean(0) + n * mm.running_avg_a) / (n + 1))
            mm.running_avg_v.copy_((e_v.mean(0) + n * mm.running_avg_v) / (n + 1))
            mm.count += 1
        if caring == "a":
            e_a = mm.running_avg_a[None].expand_as(e_a)
        if caring == "v":
            e_v = mm.running_avg_v[None].expand_as(e_v)
        xa = xa * e_a[:, :, None, None]
        xv = (v5 * e_v[:, :, None, None, None]).permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    fa = F.adaptive_avg_pool2d(xa, 1).flatten(1)
    fv = F.adaptive_avg_pool3d(xv.view(b, t, -1, *xv.shape[2:]).permute(0, 2, 1, 3, 4), 1).flatten(1)
    return model.heads.branch["audio"](fa), model.heads.branch["video"](fv)


def _official_ratios(model):
    """callbacks.py:199-233: groups by parameter name (bypass: fc_squeeze + fc_excite_<m>; main:
    the branch's encoder and fc), sum of squared gradient norms over sum of squared weight norms."""
    sums = {g: [0.0, 0.0] for g in ("bypass_audio", "main_audio", "bypass_video", "main_video")}
    for name, p in model.named_parameters():
        groups = []
        if "fc_squeeze" in name:
            groups = ["bypass_audio", "bypass_video"]
        elif "fc_excite_a" in name:
            groups = ["bypass_audio"]
        elif "fc_excite_v" in name:
            groups = ["bypass_video"]
        elif "audio" in name:
            groups = ["main_audio"]
        elif "video" in name:
            groups = ["main_video"]
        for g in groups:
            sums[g][0] += 0.0 if p.grad is None else float(p.grad.double().pow(2).sum())
            sums[g][1] += float(p.detach().double().pow(2).sum())
    return [sums[g][0] / sums[g][1] for g in ("bypass_audio", "main_audio", "bypass_video", "main_video")]


def test_greedy_steps_equal_the_official_forward_measurement_and_controller():
    """Three steps with alpha 0 from epoch 0: step 0 regular and measured, then curation steps
    caring for the side d picks; weights, running means and the accumulated speeds agree."""
    method, model, ctx, cfg = _setup(alpha=0.0, window=2, rebalance_start=0)
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(
        ref.parameters(), lr=cfg.train.lr, momentum=cfg.train.momentum, weight_decay=cfg.train.weight_decay
    )
    M, mode, caring, count = [0.0] * 4, "off", "a", 0
    history = []
    for step in range(3):
        batch = _batch(step)
        used = caring if mode == "on" else None
        history.append(used)
        assert (method.controller.caring if method.controller.mode == "on" else None) == used
        method.training_step(model, batch, ctx)
        z_a, z_v = _official_forward(ref, batch, used)
        loss = F.cross_entropy(z_a, batch["label"]) + F.cross_entropy(z_v, batch["label"])
        opt.zero_grad()
        loss.backward()
        if mode == "off":
            M = [m + r for m, r in zip(M, _official_ratios(ref))]
            d = math.log10(M[0] / M[1]) - math.log10(M[2] / M[3])
            if abs(d) > 0.0:
                mode, count, caring = "on", 0, "a" if d > 0 else "v"
        else:
            count += 1
            mode = "off" if count == 2 else mode
        opt.step()
        for (k, a), b in zip(model.state_dict().items(), ref.state_dict().values()):
            assert torch.allclose(a.float(), b.float(), atol=1e-5), (step, k)
        assert all(abs(a - b) <= 1e-6 * abs(b) for a, b in zip(method.controller.M, M)), (
            step,
            method.controller.M,
            M,
        )
    assert history[0] is None and history[1] == history[2] is not None  # steps 1 and 2 were curation steps
    assert method.controller.mode == "off" and method.controller.count == 2  # the window of Q = 2 ended


def test_predict_is_regular_and_leaves_the_running_means_unless_asked():
    method, model, ctx, _ = _setup(rebalance_start=0, alpha=0.0)
    method.training_step(model, _batch(0), ctx)
    assert method.controller.mode == "on"
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = method.predict(model, _batch(5))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    regular = method.staged_forward(model, _batch(5), None, update_avg=False)
    assert torch.allclose(out["fusion"], regular["fusion"], atol=ATOL)
    assert torch.allclose(out["fusion"], (out["audio"] + out["video"]) / 2, atol=ATOL)
    method.hp.eval_curation, method.hp.running_avg_scope = "inherit", "all_forwards"
    snapshot = copy.deepcopy(model)
    inherit = method.predict(model, _batch(5))
    with torch.no_grad():
        curated = method.staged_forward(snapshot, _batch(5), method.controller.caring, update_avg=True)
    assert torch.allclose(inherit["fusion"], curated["fusion"], atol=ATOL)
    assert int(model.heads.mmtm["2"].count) == int(before["heads.mmtm.2.count"]) + 1


def test_random_mode_draws_a_resumable_choice_per_step():
    method, model, ctx, _ = _setup(mode="random", rebalance_start=0)
    seen = []
    for step in range(6):
        ctx.global_step = step
        method._random_mode(ctx)
        seen.append((method.controller.mode, method.controller.caring))
    again = []
    for step in range(6):
        ctx.global_step = step
        method._random_mode(ctx)
        again.append((method.controller.mode, method.controller.caring))
    assert seen == again and len(set(seen)) > 1


# --------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "dataset, message",
    [
        (
            "mfeat",
            "greedy needs staged convolutional encoders (MMTM between ResNet stages); mfeat uses SmallCNN for image",
        ),
        ("mfeat3", "greedy supports exactly 2 modalities; mfeat3 has 3: image, fourier, morph"),
        ("nvgesture", "greedy supports exactly 2 modalities; nvgesture has 3: rgb, of, depth"),
        (
            "twitter15",
            "greedy needs staged convolutional encoders (MMTM between ResNet stages); "
            "twitter15 uses BertTextEncoder for text",
        ),
    ],
)
def test_datasets_without_two_staged_encoders_are_refused_in_one_line(dataset, message):
    with pytest.raises(ConfigError) as err:
        resolve_config(dataset, "greedy", {})
    assert str(err.value) == message


def test_the_audio_visual_datasets_resolve():
    for d in ("cremad", "kinetics_sounds", "vggsound"):
        assert resolve_config(d, "greedy", {}).method_params["mmtm_stages"] == [2, 3, 4]
    assert get_dataset("cremad").modalities == ("audio", "video")


@pytest.mark.parametrize(
    "key, value",
    [
        ("mode", "x"),
        ("heads", "x"),
        ("eval_curation", "x"),
        ("running_avg_scope", "x"),
        ("mmtm_stages", [5]),
        ("window", 0),
        ("alpha", -1.0),
        ("rebalance_start", -1),
    ],
)
def test_bad_settings_are_refused(key, value):
    with pytest.raises(ConfigError, match=f"method.{key}"):
        resolve_config("cremad", "greedy", {f"method.{key}": value})


def test_optimizer_covers_the_mmtms_and_branch_heads():
    method, model, ctx, _ = _setup()
    params = {id(p) for g in ctx.optimizers.main.param_groups for p in g["params"]}
    assert all(id(p) in params for p in model.parameters())
    assert isinstance(ctx.optimizers, Optimizers)
