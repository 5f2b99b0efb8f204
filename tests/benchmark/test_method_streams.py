"""The harness's method-owned random streams (``seeding.stream_seed``, ``Context.generator``) and
the step that skips the optimiser step (``Context.skip_step``): seeded from (run seed, stream,
step) only, reproduced exactly by a resumed run, and skipped batches that keep the step counters,
the LR schedule and the epoch's means right."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
import torch
import torch.nn.functional as F

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.context import Context
from mmbench.benchmark.registry import registered_method
from mmbench.benchmark.seeding import stream_generator, stream_seed
from mmbench.benchmark.trainer import Interrupted, train_run
from mmbench.methods.base import modality_accuracies
from mmbench.methods.joint import Joint


def _ctx(seed=0, step=0) -> Context:
    return Context(
        model=None,
        optimizers=None,
        device=torch.device("cpu"),
        train_cfg=None,
        modalities=("a", "v"),
        num_classes=3,
        seed=seed,
        epochs=1,
        global_step=step,
    )


# ----------------------------------------------------------------------------- the streams
def test_stream_seed_is_the_sha256_of_seed_stream_and_index():
    want = int.from_bytes(hashlib.sha256(b"3/opm/masks/17").digest()[:8], "little") & (2**63 - 1)
    assert stream_seed(3, "opm/masks", 17) == want
    seeds = {stream_seed(s, n, i) for s in (0, 1) for n in ("a", "b") for i in (0, 1, 2)}
    assert len(seeds) == 12  # every (seed, stream, step) its own stream
    with pytest.raises(ValueError, match="non-empty"):
        stream_seed(0, "", 0)


def test_context_generator_is_a_function_of_seed_stream_and_global_step_and_spares_the_global_rng():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    draw = lambda ctx, *a, **k: torch.rand(5, generator=ctx.generator(*a, **k))  # noqa: E731
    x = draw(_ctx(step=4), "m/masks")
    assert torch.equal(x, draw(_ctx(step=4), "m/masks"))  # a fresh context (a resumed run): same
    assert torch.equal(x, torch.rand(5, generator=stream_generator(0, "m/masks", 4)))
    ctx = _ctx(step=4)
    assert torch.equal(draw(ctx, "m/masks"), draw(ctx, "m/masks"))  # every call reseeds
    assert not torch.equal(x, draw(ctx, "m/order"))
    assert not torch.equal(x, draw(_ctx(step=5), "m/masks"))
    assert not torch.equal(x, draw(_ctx(seed=1, step=4), "m/masks"))
    assert torch.equal(draw(_ctx(step=99), "m/masks", index=4), x)  # an explicit index (per epoch)
    assert torch.equal(torch.get_rng_state(), before)
    g = ctx.generator("m/masks")
    assert g.device.type == "cpu" and ctx.generator("m/masks") is g  # one kept per stream
    copy.deepcopy(ctx)  # the cost measurement deep-copies the context


# ----------------------------------------------------------------------------- through the harness
class _StreamProbe(Joint):
    """A joint step that draws its own stream and skips every third batch (global step 1, 4, ...),
    logging what it drew and the step it trained."""

    name = "stream_probe"

    def training_step(self, model, batch, ctx):
        u = torch.rand((), generator=ctx.generator("probe/draw"))
        ctx.log("draw", u)
        if ctx.global_step % 3 == 1:
            ctx.skip_step()
            return {"loss": torch.tensor(float("nan")), "trained_step": -1.0}
        with ctx.autocast():
            logits = model.heads(self.encode(model, batch))
            loss = F.cross_entropy(logits["fusion"].float(), batch["label"]) * (1 + 0 * u)
        ctx.optimizers.zero_grad()
        loss.backward()
        ctx.optimizers.step()
        return {
            "loss": loss.detach(),
            "trained_step": float(ctx.global_step),
            **modality_accuracies(logits, batch["label"], self.modalities),
        }


OVERRIDES = {
    "epochs": 3,
    "batch_size": 32,
    "data.limit_train_per_class": 10,
    "train.schedule": "step",
    "train.step_size": 1,
    "train.gamma": 0.5,
}


def _history(root, cfg):
    path = root / cfg.dataset / cfg.run_name / "seed-0" / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_skipped_steps_keep_counters_schedule_and_means_and_resume_draws_the_same_stream(tmp_path):
    with registered_method(_StreamProbe):
        cfg = resolve_config("mfeat", "stream_probe", OVERRIDES, seed=0, device="cpu")
        full = train_run(cfg, tmp_path / "full", progress=False, echo=lambda *_: None)
        with pytest.raises(Interrupted):
            train_run(cfg, tmp_path / "cut", progress=False, stop_after_epochs=1, echo=lambda *_: None)
        resumed = train_run(cfg, tmp_path / "cut", progress=False, echo=lambda *_: None)
    assert full["status"] == "finished" and full["selection"] == resumed["selection"]
    ha, hb = _history(tmp_path / "full", cfg), _history(tmp_path / "cut", cfg)
    strip = lambda h: [{k: v for k, v in r.items() if k != "time"} for r in h]  # noqa: E731
    assert strip(ha) == strip(hb)  # the drawn stream, the skips and the metrics all resume exactly

    n = 10 * 10 // 32 + 1  # mfeat: 10 classes x 10 rows, batches of 32 (last one partial) = 4
    steps = [list(range(e * n, (e + 1) * n)) for e in range(3)]
    for rec, st in zip(ha, steps):
        trained = [s for s in st if s % 3 != 1]
        assert rec["diagnostics"]["skipped_steps"] == len(st) - len(trained)
        assert rec["train"]["trained_step"] == pytest.approx(sum(trained) / len(trained))  # skipped: out
        assert all(v == v for v in rec["train"].values())  # the skipped batch's NaN loss never counts
        want = [torch.rand((), generator=stream_generator(0, "probe/draw", s)).item() for s in st]
        assert rec["diagnostics"]["draw"] == pytest.approx(sum(want) / len(want), abs=1e-7)
    # the LR schedule steps once per epoch whatever the batches did
    assert [r["lr"]["main/0"] for r in ha] == pytest.approx([cfg.train.lr * 0.5 ** (e + 1) for e in range(3)])
    ck = torch.load(tmp_path / "cut" / "mfeat" / cfg.run_name / "seed-0" / "last.ckpt", weights_only=False)
    assert ck["global_step"] == 3 * n  # skipped batches count


def test_a_skipped_step_leaves_weights_and_optimiser_untouched(tmp_path):
    with registered_method(_StreamProbe):
        cfg = resolve_config("mfeat", "stream_probe", {**OVERRIDES, "epochs": 1}, seed=0, device="cpu")
    from mmbench.benchmark.registry import get_dataset
    from mmbench.benchmark.trainer import build_run

    run = build_run(cfg, get_dataset("mfeat"), _StreamProbe, None, torch.device("cpu"))
    batch = next(iter(run.train_loader))
    run.ctx.global_step = 1  # a skipped step of the probe
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    run.method.training_step(run.model, batch, run.ctx)
    assert run.ctx.take_skipped() and not run.ctx.take_skipped()  # the flag is per batch
    assert all(torch.equal(before[k], v) for k, v in run.model.state_dict().items())
    assert not run.ctx.optimizers.main.state  # never stepped
    run.ctx.global_step = 2
    run.method.training_step(run.model, batch, run.ctx)
    assert not run.ctx.take_skipped()
    assert any(not torch.equal(before[k], v) for k, v in run.model.state_dict().items())
