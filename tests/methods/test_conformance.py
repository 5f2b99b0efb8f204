"""The conformance kit: every built-in method passes it, and each rule catches a method that
breaks it (one deliberately broken method per rule, trained on tiny mfeat)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mmbench.testing
from mmbench.benchmark.registry import builtin_method_names, get_method, method_names
from mmbench.methods.joint import Joint
from mmbench.methods.unimodal import Unimodal
from mmbench.testing import ConformanceError, check_method


@pytest.mark.slow
@pytest.mark.parametrize("name", builtin_method_names())
def test_builtin_method_passes_conformance_kit(name):
    cls = get_method(name)
    report = check_method(cls)
    assert report.passed, report
    for dataset, checks in report.passed.items():
        assert checks == ["losses", "predict", "encoders", "state", "determinism", "resume"], dataset
    # only a method limited to fewer modalities than mfeat3's three may skip it
    if "mfeat3" in report.refused:
        assert cls.max_modalities is not None and cls.max_modalities < 3
    else:
        assert set(report.passed) == set(getattr(cls, "conformance_datasets", None) or ("mfeat", "mfeat3"))


@pytest.mark.slow
def test_kit_leaves_the_registry_as_it_found_it_and_keeps_runs_only_when_asked(tmp_path):
    before = method_names()
    report = check_method(_Relabelled, datasets=("mfeat",), results_root=tmp_path / "kit")
    assert method_names() == before
    assert "kit_relabelled_joint" not in before
    assert report.passed == {"mfeat": ["losses", "predict", "encoders", "state", "determinism", "resume"]}
    # the uninterrupted run (a) and the stopped-and-resumed one (c); (b) only when they differ
    assert sorted(p.name for p in (tmp_path / "kit" / "mfeat").iterdir()) == ["a", "c"]
    with pytest.raises(ConformanceError, match="is not empty"):
        check_method(_Relabelled, datasets=("mfeat",), results_root=tmp_path / "kit")


# --------------------------------------------------------------------------- broken methods
class _Relabelled(Joint):
    """A conformant method under another name (not registered anywhere)."""

    name = "kit_relabelled_joint"


class _DropsAModality(Joint):
    name = "kit_drops_fourier"

    @torch.no_grad()
    def predict(self, model, batch):
        out = super().predict(model, batch)
        del out["fourier"]
        return out


class _ForgetsItsState(Joint):
    """Scales the logits by the number of epochs seen, a count it does not checkpoint."""

    name = "kit_forgets_state"

    def __init__(self, *args):
        super().__init__(*args)
        self.epochs_seen = 0

    def training_step(self, model, batch, ctx):
        with ctx.autocast():
            logits = model.heads(self.encode(model, batch))["fusion"] * (1 + self.epochs_seen)
            loss = F.cross_entropy(logits, batch["label"])
        ctx.optimizers.zero_grad()
        loss.backward()
        ctx.optimizers.step()
        return {"loss": loss.detach()}

    def on_epoch_end(self, ctx):
        self.epochs_seen += 1


class _UnseededNoise(Joint):
    """Adds noise from a generator seeded by the clock: two runs of one seed differ."""

    name = "kit_unseeded_noise"

    def training_step(self, model, batch, ctx):
        g = torch.Generator().manual_seed(time.time_ns())
        batch = dict(batch, fourier=batch["fourier"] + torch.randn(batch["fourier"].shape, generator=g))
        return super().training_step(model, batch, ctx)


class _GrowsAnEncoder(Joint):
    """Wraps the fourier encoder in a bigger module instead of keeping its layers in the heads."""

    name = "kit_grows_encoder"

    def configure_optimizers(self, model, train_cfg):
        model.encoders["fourier"] = nn.Sequential(model.encoders["fourier"], nn.Linear(128, 128))
        return super().configure_optimizers(model, train_cfg)


class _NaNLoss(Joint):
    name = "kit_nan_loss"

    def training_step(self, model, batch, ctx):
        out = super().training_step(model, batch, ctx)
        return dict(out, loss=out["loss"] * float("nan"))


class _NoLoss(Joint):
    name = "kit_no_loss"

    def training_step(self, model, batch, ctx):
        out = super().training_step(model, batch, ctx)
        return {"objective": out.pop("loss")}


class _LosesItsStateOnLoad(Joint):
    """state_dict() reports a step counter that load_state_dict() ignores."""

    name = "kit_state_not_restored"

    def __init__(self, *args):
        super().__init__(*args)
        self.steps = 0

    def training_step(self, model, batch, ctx):
        self.steps += 1
        return super().training_step(model, batch, ctx)

    def state_dict(self):
        return {"steps": self.steps}


class _TrainsUnusedEncoder(Unimodal):
    """Runs every encoder and puts it in the optimiser: weight decay moves the one it never uses."""

    name = "kit_trains_unused_encoder"

    def configure_optimizers(self, model, train_cfg):
        from mmbench.methods.base import single_optimizer

        return single_optimizer(list(model.parameters()), train_cfg)

    def training_step(self, model, batch, ctx):
        feats = self.encode(model, batch, modalities=self.modalities)
        loss = F.cross_entropy(model.heads(feats)["fusion"], batch["label"]) + 0 * feats["fourier"].sum()
        ctx.optimizers.zero_grad()
        loss.backward()
        ctx.optimizers.step()
        return {"loss": loss.detach()}


class _TwoModalitiesOnly(Joint):
    name = "kit_two_only"
    max_modalities = 2


class _ClaimsTwoAcceptsThree(_TwoModalitiesOnly):
    name = "kit_claims_two"

    @classmethod
    def validate_params(cls, params, spec):
        pass


@dataclass
class _NoDefaultHyper:
    strength: float


class _HyperWithoutDefault(Joint):
    name = "kit_hyper_without_default"
    Hyper = _NoDefaultHyper


@pytest.mark.slow
@pytest.mark.parametrize(
    "cls, check, words",
    [
        (_DropsAModality, "predict", "no logits for ['fourier']"),
        (_ForgetsItsState, "resume", "differs from an uninterrupted one at epoch 1"),
        (_UnseededNoise, "determinism", "two runs with seed 0 differ at epoch 0"),
        (_GrowsAnEncoder, "encoders", "changed structure"),
        (_NaNLoss, "losses", "non-finite loss at epoch 0"),
        (_NoLoss, "losses", "returns no 'loss*' key"),
        (_LosesItsStateOnLoad, "state", "state.steps"),
        (_TrainsUnusedEncoder, "encoders", "'fourier' is not used by the method"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_kit_rejects_method_that_breaks_the_contract(cls, check, words):
    overrides = {"method.modality": "image"} if issubclass(cls, Unimodal) else None
    with pytest.raises(ConformanceError) as info:
        check_method(cls, datasets=("mfeat",), overrides=overrides)
    message = str(info.value)
    assert message.startswith(f"[mfeat] {check}:"), message
    assert words in message, message


def test_kit_records_refusal_of_more_modalities_than_the_official_code_supports():
    with pytest.raises(ConformanceError, match="refused every dataset.*supports at most 2 modalities"):
        check_method(_TwoModalitiesOnly, datasets=("mfeat3",))


def test_kit_rejects_max_modalities_that_is_not_enforced():
    with pytest.raises(ConformanceError, match=r"\[mfeat3\] refusal: max_modalities = 2"):
        check_method(_ClaimsTwoAcceptsThree, datasets=("mfeat3",))


def test_kit_rejects_classes_that_are_not_methods():
    with pytest.raises(ConformanceError, match="not a subclass of mmbench.methods.base.Method"):
        check_method(dict)
    with pytest.raises(ConformanceError, match="give every field a default"):
        check_method(_HyperWithoutDefault)


def test_kit_rejects_a_name_taken_by_another_method():
    class Impostor(Joint):
        name = "unimodal"

    with pytest.raises(ConformanceError, match="'unimodal' is already taken"):
        check_method(Impostor)


def test_kit_rejects_per_dataset_settings_without_a_source(monkeypatch):
    preset = {"datasets": {"mfeat": {"head_init": "torch"}}, "sources": {"mfeat": {}}}
    monkeypatch.setattr(mmbench.testing, "method_preset", lambda name: preset)
    with pytest.raises(ConformanceError, match=r"\[mfeat\] settings: \[datasets.mfeat\] head_init needs a source"):
        check_method(_Relabelled, datasets=("mfeat",))
    preset = {"datasets": {"mfeat": {"head_init": "torch"}}, "sources": {"mfeat": {"head_init": "[paper v2] Sec. 4"}}}
    monkeypatch.setattr(mmbench.testing, "method_preset", lambda name: preset)
    mmbench.testing._check_presets(_Relabelled)  # a tag with a version note is a tag
    preset = {"datasets": {"mfeat": {"strength": 2.0}}}
    monkeypatch.setattr(mmbench.testing, "method_preset", lambda name: preset)
    with pytest.raises(ConformanceError, match="strength is not a kit_relabelled_joint hyper-parameter"):
        check_method(_Relabelled, datasets=("mfeat",))
