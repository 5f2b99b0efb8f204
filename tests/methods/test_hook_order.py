"""The harness calls a method's hooks in the order ``Method.HOOK_ORDER`` declares (the idea of
Lightning's ``tests/tests_pytorch/models/test_hooks.py``): a recording method runs fresh, resumed,
with a held-out split (G-Blend's ``ctx.heldout_loader``) and from unimodal weights, and its real
call sequence is compared with the one ``HOOK_ORDER`` gives for that run."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from mmbench.benchmark import registry
from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.trainer import Interrupted, train_run
from mmbench.methods.base import Method
from mmbench.methods.joint import Joint

TINY = {"data.limit_train_per_class": 3}
CALLS: list[str] = []  # module level: the copies the cost measurement makes record too
HOOKS = list(dict.fromkeys(hook for hook, _ in Method.HOOK_ORDER))


@dataclass
class RecordingHyper:
    head_init: str = "xavier"
    unimodal_bias: str = "split"
    init_from_unimodal: bool = False
    heldout: float = 0.0


def _recorded(hook: str):
    base = getattr(Joint, hook)

    def record(self, *args, **kwargs):
        CALLS.append(hook)
        return base(self, *args, **kwargs)

    return record


class Recording(Joint):
    """``joint`` that records every hook the harness calls (and draws G-Blend-style held-out
    batches at each epoch start)."""

    name = "recording"
    Hyper = RecordingHyper
    heldout_seen: list[int] = []

    def heldout_fraction(self):
        CALLS.append("heldout_fraction")
        return self.hp.heldout

    def on_epoch_start(self, ctx):
        CALLS.append("on_epoch_start")
        if ctx.heldout_loader is not None:
            Recording.heldout_seen.append(sum(len(b["label"]) for b in ctx.heldout_loader))

    def init_from_unimodal(self, model, weights):
        CALLS.append("init_from_unimodal")
        assert set(weights) == set(self.modalities)
        for m in self.modalities:
            model.encoders[m].load_state_dict(weights[m]["encoder"])


for _hook in HOOKS:
    if _hook not in Recording.__dict__:
        setattr(Recording, _hook, _recorded(_hook))


def expected(epochs: int, *, resume: bool = False, init: bool = False, end: bool = True) -> list[str]:
    """The call sequence ``HOOK_ORDER`` gives for one start (repeats of a hook collapsed)."""
    when = {"start": True, "no_val": False, "resume": resume, "init": init}
    calls = [hook for hook, w in Method.HOOK_ORDER if when.get(w, False)]
    per_epoch = [hook for hook, w in Method.HOOK_ORDER if w in ("epoch", "batch", "eval")]
    calls += per_epoch * epochs
    if end:
        calls += [hook for hook, w in Method.HOOK_ORDER if w in ("end", "cost")]
    return calls


def recorded() -> list[str]:
    out = [hook for hook, _ in itertools.groupby(CALLS)]
    CALLS.clear()
    return out


@pytest.fixture
def recording():
    CALLS.clear()
    Recording.heldout_seen = []
    with registry.METHODS.registered(Recording):
        yield


def _cfg(sets: dict, **kw):
    return resolve_config("mfeat", "recording", {**TINY, **sets}, device="cpu", **kw)


def test_hook_order_names_real_hooks_of_method():
    assert all(callable(getattr(Method, hook)) for hook in HOOKS)
    whens = {w for _, w in Method.HOOK_ORDER}
    assert whens == {"start", "no_val", "resume", "init", "epoch", "batch", "eval", "end", "cost"}


def test_a_fresh_run_calls_the_hooks_in_hook_order(recording, tmp_path):
    train_run(_cfg({"epochs": 2}), tmp_path, progress=False, echo=lambda *_: None)
    assert recorded() == expected(2)


def test_a_resumed_run_restores_the_method_before_building_its_heads(recording, tmp_path):
    cfg = _cfg({"epochs": 3})
    with pytest.raises(Interrupted):
        train_run(cfg, tmp_path, progress=False, stop_after_epochs=1, echo=lambda *_: None)
    assert recorded() == expected(1, end=False)
    train_run(cfg, tmp_path, progress=False, echo=lambda *_: None)
    assert recorded() == expected(2, resume=True)


def test_a_held_out_run_has_the_same_order_and_a_held_out_loader(recording, tmp_path):
    train_run(_cfg({"epochs": 2, "method.heldout": 0.25}), tmp_path, progress=False, echo=lambda *_: None)
    assert recorded() == expected(2)
    assert len(Recording.heldout_seen) == 2 and Recording.heldout_seen[0] == Recording.heldout_seen[1] > 0


@pytest.mark.slow
def test_init_from_unimodal_comes_after_the_optimisers_of_a_fresh_run_only(recording, tmp_path):
    for m in ("image", "fourier"):
        train_run(
            resolve_config(
                "mfeat", "unimodal", {**TINY, "epochs": 1, "method.modality": m}, tag=m, device="cpu"
            ),
            tmp_path,
            progress=False,
            echo=lambda *_: None,
        )
    CALLS.clear()
    cfg = _cfg({"epochs": 2, "method.init_from_unimodal": True})
    with pytest.raises(Interrupted):
        train_run(cfg, tmp_path, progress=False, stop_after_epochs=1, echo=lambda *_: None)
    assert recorded() == expected(1, init=True, end=False)
    train_run(cfg, tmp_path, progress=False, echo=lambda *_: None)  # resumed: not initialised again
    assert recorded() == expected(1, resume=True)
