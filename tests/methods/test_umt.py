"""UMT (Uni-Modal Teacher) and UME (Uni-Modal Ensemble), Du et al., ICML 2023: the spec's numeric
cases, the step against a restatement of BalanceBenchmark's ``UMT_trainer.training_step`` and of
the paper's independent unimodal losses, the teachers the harness hands over, the reference-run
ensemble, and the refusals. Conformance (with exact resume) runs in tests/test_conformance.py."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
import torch.nn.functional as F
from _method_runs import mfeat_setup

from mmbench.benchmark import store
from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.trainer import train_run
from mmbench.errors import ConfigError
from mmbench.methods.ume import ensemble_logits, ume_loss
from mmbench.methods.umt import distillation_loss, umt_loss
from mmbench.testing import check_method

ATOL = 1e-6
DATA = {"data.limit_train_per_class": 5, "epochs": 2}


# --------------------------------------------------------------------------- spec section 8
def test_umt_loss_matches_the_spec_case():
    z = torch.tensor([[1.35, 0.4, 1.0], [0.45, 0.1, 0.4]])  # joint.md base case
    y = torch.tensor([0, 1])
    ce = F.cross_entropy(z, y)
    assert abs(ce.item() - 1.032319) < ATOL
    s_a = torch.tensor([[1.0, 0, 2], [0.5, 0.5, 0.5]], requires_grad=True)
    t_a = torch.tensor([[0.8, 0.2, 1], [0.5, 0, 1.5]], requires_grad=True)
    s_v = torch.tensor([[0.2, 0.4, 0], [1.0, 1, 0]], requires_grad=True)
    t_v = torch.tensor([[0.2, 0, 0], [0.0, 1, 1]], requires_grad=True)
    with torch.no_grad():  # as the step computes the teachers
        ta, tv = t_a * 1, t_v * 1
    d = {"a": distillation_loss(s_a, ta), "v": distillation_loss(s_v, tv)}
    assert abs(d["a"].item() - 0.388333) < ATOL and abs(d["v"].item() - 0.36) < ATOL
    assert abs(umt_loss(ce, d, 1.0).item() - 1.780652) < ATOL
    loss = umt_loss(ce, d, 10.0)
    assert abs(loss.item() - 8.515652) < ATOL
    loss.backward()
    assert t_a.grad is None and t_v.grad is None  # no gradient reaches the teachers
    assert s_a.grad is not None
    # "sum": per-sample squared distance summed over features, averaged over the batch (d_m = 3 times "mean")
    assert abs(distillation_loss(s_a, ta, "sum").item() - 3 * 0.388333) < 1e-5


def test_ume_combination_and_loss_match_the_spec_case():
    z = {"a": torch.tensor([[2.0, 0, 1], [0.5, 0.2, 0.1]]), "v": torch.tensor([[1.0, 1, 0], [0, 1, 0]])}
    y = torch.tensor([0, 1])
    mean = ensemble_logits(z, ("a", "v"), "logits")
    assert torch.allclose(mean, torch.tensor([[1.5, 0.5, 0.5], [0.25, 0.6, 0.05]]), atol=ATOL)
    probs = ensemble_logits(z, ("a", "v"), "probs").exp()
    expected = torch.tensor([[0.543780, 0.256175, 0.200045], [0.313342, 0.441683, 0.244976]])
    assert torch.allclose(probs, expected, atol=ATOL)
    assert abs(ume_loss(z, y, ("a", "v")).item() - 1.500572) < ATOL


# --------------------------------------------------------------------------- the step, restated
def _frozen_teachers(model, seed=7):
    torch.manual_seed(seed)
    teachers = {}
    for m, enc in model.encoders.items():
        t = copy.deepcopy(enc)
        with torch.no_grad():
            for p in t.parameters():
                p.add_(0.1 * torch.randn_like(p))
        teachers[m] = t.eval().requires_grad_(False)
    return teachers


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_umt_step_equals_balancebenchmark_umt_training_step(reduction):
    """UMT_trainer.py:139-150: out = model(x); loss = CE(out, y) + scaling * sum_m MSE(feature_m,
    teacher_m(x_m)) with the teachers under no_grad; backward; SGD step (the shared optimiser)."""
    method, model, batch, ctx = mfeat_setup("umt", params={"lam": 3.0, "distill_reduction": reduction})
    teachers = _frozen_teachers(model)
    method.set_teachers(teachers)
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(
        ref.parameters(),
        lr=ctx.train_cfg.lr,
        momentum=ctx.train_cfg.momentum,
        weight_decay=ctx.train_cfg.weight_decay,
    )
    method.training_step(model, batch, ctx)

    feats = {m: ref.encoders[m](batch[m]) for m in ("image", "fourier")}
    out = ref.heads.fc(torch.cat([feats["image"], feats["fourier"]], 1))
    loss = F.cross_entropy(out, batch["label"])
    for m in ("image", "fourier"):
        with torch.no_grad():
            t = teachers[m](batch[m])
        diff = (feats[m] - t).pow(2)
        loss = loss + 3.0 * (diff.mean() if reduction == "mean" else diff.sum(1).mean())
    opt.zero_grad()
    loss.backward()
    opt.step()
    for (k, a), b in zip(model.state_dict().items(), ref.state_dict().values()):
        assert torch.allclose(a, b, atol=ATOL), k
    for t in teachers.values():  # the teachers are neither trained nor put in train mode
        assert not t.training
        assert all(p.grad is None for p in t.parameters())


def test_umt_teacher_mode_train_uses_batch_statistics_and_keeps_them_in_the_state():
    method, model, batch, ctx = mfeat_setup("umt", params={"teacher_mode": "train"})
    teachers = _frozen_teachers(model)
    before = teachers["image"].state_dict()["net.1.running_mean"].clone()
    method.set_teachers(teachers)
    assert teachers["image"].training
    method.training_step(model, batch, ctx)
    after = teachers["image"].state_dict()["net.1.running_mean"]
    assert not torch.equal(before, after)  # BalanceBenchmark's drifting BN statistics
    state = method.state_dict()
    assert torch.equal(state["teacher_buffers"]["image"]["net.1.running_mean"], after)
    again, *_ = mfeat_setup("umt", params={"teacher_mode": "train"})
    again.load_state_dict(state)
    fresh = _frozen_teachers(model)
    again.set_teachers(fresh)
    assert torch.equal(fresh["image"].state_dict()["net.1.running_mean"], after)


def test_ume_step_equals_independent_unimodal_steps():
    """L = sum_m CE(head_m(phi^m), y): each encoder and head gets exactly its own unimodal gradient."""
    method, model, batch, ctx = mfeat_setup("ume")
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(
        ref.parameters(),
        lr=ctx.train_cfg.lr,
        momentum=ctx.train_cfg.momentum,
        weight_decay=ctx.train_cfg.weight_decay,
    )
    method.training_step(model, batch, ctx)
    opt.zero_grad()
    for m in ("image", "fourier"):  # separate backwards: gradients of separate models
        F.cross_entropy(ref.heads.fc[m](ref.encoders[m](batch[m])), batch["label"]).backward()
    opt.step()
    for (k, a), b in zip(model.state_dict().items(), ref.state_dict().values()):
        assert torch.allclose(a, b, atol=ATOL), k


def test_ume_predict_gives_the_ensemble_and_the_members():
    method, model, batch, _ = mfeat_setup("ume", params={"ume_combine": "probs"})
    model.eval()
    out = method.predict(model, batch)
    members = {m: model.heads.fc[m](model.encoders[m](batch[m])) for m in ("image", "fourier")}
    for m in members:
        assert torch.allclose(out[m], members[m], atol=ATOL)
    mean_p = (members["image"].softmax(1) + members["fourier"].softmax(1)) / 2
    assert torch.allclose(out["fusion"].exp(), mean_p, atol=ATOL)
    assert method.head_meanings()["fusion"].startswith("log of the mean")


# --------------------------------------------------------------------------- through the harness
@pytest.fixture(scope="module")
def references(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    for m in ("image", "fourier"):
        cfg = resolve_config("mfeat", "unimodal", {**DATA, "method.modality": m}, tag=m, device="cpu")
        train_run(cfg, root, progress=False)
    return root


@pytest.mark.slow
def test_umt_distils_from_the_selected_unimodal_encoders(tmp_path, references):
    from mmbench.methods.umt import UMT

    root = shutil.copytree(references, tmp_path / "r")
    seen = {}
    orig = UMT.set_teachers

    def spy(self, teachers):
        seen.update(teachers)
        return orig(self, teachers)

    UMT.set_teachers = spy
    try:
        result = train_run(resolve_config("mfeat", "umt", DATA, device="cpu"), root, progress=False)
    finally:
        UMT.set_teachers = orig
    for m in ("image", "fourier"):
        best = torch.load(root / "mfeat" / f"unimodal-{m}" / "seed-0" / store.BEST, weights_only=False)[
            "rules"
        ]["val"]
        assert all(
            torch.equal(v, best["model"][f"encoders.{m}.{k}"]) for k, v in seen[m].state_dict().items()
        )
        assert result["teachers_from"][m]["epoch"] == best["epoch"]
    assert "initialised_from" not in result  # student_init = "scratch"
    history = store.read_history(
        root / "mfeat" / "umt-epochs2_limit_train_per_class5" / "seed-0" / store.HISTORY
    )
    assert {"loss_ce", "loss_distill_image", "loss_distill_fourier"} <= set(history[0]["train"])


@pytest.mark.slow
def test_umt_student_init_teacher_starts_the_student_from_the_teachers(tmp_path, references):
    root = shutil.copytree(references, tmp_path / "r")
    cfg = resolve_config(
        "mfeat", "umt", {**DATA, "epochs": 1, "method.student_init": "teacher"}, device="cpu"
    )
    result = train_run(cfg, root, progress=False)
    assert result["initialised_from"] == result["teachers_from"]


@pytest.mark.slow
def test_ume_reference_runs_evaluates_the_ensemble_of_the_unimodal_runs(tmp_path, references):
    root = shutil.copytree(references, tmp_path / "r")
    cfg = resolve_config(
        "mfeat", "ume", {**DATA, "epochs": 1, "method.ume_source": "reference_runs"}, device="cpu"
    )
    result = train_run(cfg, root, progress=False)
    sel = result["selection"]["val"]
    for m in ("image", "fourier"):
        ref = store.read_json(root / "mfeat" / f"unimodal-{m}" / "seed-0" / store.RESULT)["selection"]["val"]
        assert sel["test"][m] == pytest.approx(
            ref["test"]["fusion"], abs=ATOL
        )  # the members are the references
    assert result["initialised_from"]["image"]["run"].endswith("unimodal-image/seed-0")
    assert result["heads"]["image"] == "the unimodal reference run's selected head"


def test_umt_without_reference_runs_is_refused_in_one_line(tmp_path):
    cfg = resolve_config("mfeat", "umt", DATA, device="cpu")
    with pytest.raises(
        ConfigError,
        match=r"^umt needs its teachers, the unimodal reference runs .*make them with: "
        r"mmbench run -d mfeat -m unimodal --set method.modality=image",
    ):
        train_run(cfg, tmp_path, progress=False)
    assert not (tmp_path / "mfeat").exists()


@pytest.mark.parametrize(
    "method, key, value",
    [
        ("umt", "distill_reduction", "max"),
        ("umt", "teacher_mode", "x"),
        ("umt", "student_init", "x"),
        ("umt", "lam", -1.0),
        ("ume", "ume_combine", "median"),
        ("ume", "ume_source", "x"),
    ],
)
def test_bad_settings_are_refused(method, key, value):
    with pytest.raises(ConfigError, match=f"method.{key}"):
        resolve_config("mfeat", method, {f"method.{key}": value})


@pytest.mark.slow
def test_umt_teacher_mode_train_resumes_exactly():
    report = check_method(
        __import__("mmbench.methods.umt", fromlist=["UMT"]).UMT,
        datasets=("mfeat",),
        overrides={"method.teacher_mode": "train"},
    )
    assert report.passed["mfeat"][-1] == "resume"
