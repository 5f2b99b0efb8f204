"""Harness pieces for methods with stages: the ``train_mode`` hook (frozen encoders stay in eval
mode, their BN statistics do not move), ``fresh_optimizer`` at a stage switch, and epochs a method
marks not selectable are never chosen by the ``val`` rule."""

import pytest
import torch

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.registry import get_dataset
from mmbench.benchmark.trainer import build_run, train_run
from mmbench.methods.base import fresh_optimizer
from mmbench.methods.joint import Joint

QUIET = {"progress": False, "echo": lambda *_: None}


class _HeadsOnlyFromEpoch1(Joint):
    """Epoch 0 joint; from epoch 1 a fresh optimiser over the head alone, encoders frozen in eval
    mode; only epochs >= 1 are selectable."""

    name = "joint"  # resolves joint's settings; never registered

    def train_mode(self, model, ctx):
        model.train()
        if ctx.epoch >= 1:
            model.encoders.eval()

    def on_epoch_start(self, ctx):
        if ctx.epoch == 1:
            ctx.optimizers = fresh_optimizer(ctx.model.heads.parameters(), ctx.train_cfg, lr=0.5)

    def training_step(self, model, batch, ctx):
        if ctx.epoch >= 1:
            assert not any(m.training for m in model.encoders.modules())
        return super().training_step(model, batch, ctx)

    def on_epoch_end(self, ctx):
        ctx.selectable = ctx.epoch >= 1


@pytest.mark.slow
def test_train_mode_freezes_encoders_and_fresh_optimizer_trains_only_the_head(monkeypatch):
    cfg = resolve_config("mfeat", "joint", {"epochs": 3, "data.limit_train_per_class": 10}, device="cpu")
    run = build_run(cfg, get_dataset("mfeat"), _HeadsOnlyFromEpoch1, None, torch.device("cpu"))
    from mmbench.benchmark import trainer

    run.ctx.start_epoch(0)
    run.method.on_epoch_start(run.ctx)
    trainer._train_epoch(run.method, run.model, run.train_loader, run.ctx, cfg, False)
    enc0 = {k: v.clone() for k, v in run.model.encoders.state_dict().items()}
    assert any("running_mean" in k for k in enc0)  # the encoders have BN statistics to protect
    run.ctx.start_epoch(1)
    run.method.on_epoch_start(run.ctx)
    assert run.ctx.optimizers.schedulers == {} and run.ctx.optimizers.lrs() == {"main/0": 0.5}
    assert run.ctx.optimizers.main.state == {}  # fresh: no momentum yet
    heads0 = {k: v.clone() for k, v in run.model.heads.state_dict().items()}
    trainer._train_epoch(run.method, run.model, run.train_loader, run.ctx, cfg, False)
    assert all(
        torch.equal(enc0[k], v) for k, v in run.model.encoders.state_dict().items()
    )  # incl. BN buffers
    assert any(not torch.equal(heads0[k], v) for k, v in run.model.heads.state_dict().items())


@pytest.mark.slow
def test_epochs_marked_not_selectable_are_never_selected(tmp_path, monkeypatch):
    import mmbench.benchmark.trainer as trainer

    cfg = resolve_config("mfeat", "joint", {"epochs": 3, "data.limit_train_per_class": 10}, device="cpu")
    monkeypatch.setattr(trainer, "get_method", lambda name: _HeadsOnlyFromEpoch1)
    res = train_run(cfg, tmp_path, **QUIET)
    assert res["selection"]["val"]["epoch"] >= 1 and res["selection"]["test-best"]["epoch"] >= 1
