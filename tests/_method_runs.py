"""Helpers shared by the method tests: a real mfeat batch with the real encoders, a recording
optimiser, the resume-equality checks (uninterrupted run vs. runs stopped and resumed) and a short
run through the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.context import Context
from mmbench.benchmark.registry import get_dataset, get_method
from mmbench.benchmark.trainer import Interrupted, MultimodalModel, train_run
from mmbench.cli import cli
from mmbench.methods.base import Optimizers


def mfeat_setup(method: str, dataset: str = "mfeat", params: dict | None = None, seed: int = 0, batch: int = 32):
    """(method, model, batch, ctx) on real mfeat data with the dataset's encoders (CPU, fp32)."""
    overrides = {f"method.{k}": v for k, v in (params or {}).items()}
    overrides["data.preset"] = "smoke"
    cfg = resolve_config(dataset, method, overrides, seed=seed, device="cpu")
    spec = get_dataset(dataset)
    torch.manual_seed(seed)
    factories = spec.backbones(cfg.data)
    encoders = nn.ModuleDict({m: factories[m][0]() for m in spec.modalities})
    dims = {m: factories[m][1] for m in spec.modalities}
    cls = get_method(method)
    meth = cls(cls.make_hyper(cfg.method_params), spec.modalities, spec.num_classes, dims)
    model = MultimodalModel(encoders, meth.build_heads(dims, spec.num_classes))
    data = spec.build("train", None, True, cfg.data)
    b = data.batch(torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:batch])
    opts = meth.configure_optimizers(model, cfg.train)
    ctx = Context(
        model=model,
        optimizers=opts,
        device=torch.device("cpu"),
        train_cfg=cfg.train,
        modalities=spec.modalities,
        num_classes=spec.num_classes,
        seed=seed,
        epochs=cfg.train.epochs,
        train_loader=[None] * 4,
    )
    model.train()
    return meth, model, b, ctx


def cpu_context(model, spec, opt: torch.optim.Optimizer, **extra) -> Context:
    """A CPU ``Context`` (seed 0, no train config) stepping ``opt`` for a hand-built ``model`` on
    the dataset ``spec``; ``extra`` sets the remaining fields (``epochs``, ``epoch``, ...)."""
    return Context(
        model=model,
        optimizers=Optimizers({"main": opt}),
        device=torch.device("cpu"),
        train_cfg=None,
        modalities=spec.modalities,
        num_classes=spec.num_classes,
        seed=0,
        **extra,
    )


class RecordingOptimizers:
    """Wraps ``Optimizers``: before every ``step`` records every parameter's grad and value."""

    def __init__(self, inner, model):
        self.inner = inner
        self.model = model
        self.records: list[dict] = []

    def step(self):
        self.records.append(
            {
                n: (p.grad.detach().clone() if p.grad is not None else None, p.detach().clone())
                for n, p in self.model.named_parameters()
            }
        )
        self.inner.step()

    def __getattr__(self, name):
        return getattr(self.inner, name)


def plain_sgd(model, lr: float = 0.0):
    """SGD without momentum or weight decay over all parameters (to read gradients back)."""
    return Optimizers({"main": torch.optim.SGD(model.parameters(), lr=lr)})


def _history(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_history(root, cfg) -> list[dict]:
    """history.jsonl of seed 0 of ``cfg`` under the results folder ``root``."""
    return _history(root / cfg.dataset / cfg.run_name / "seed-0" / "history.jsonl")


def assert_resume_matches(tmp_path, cfg, stop: int) -> None:
    """Train ``cfg`` once uninterrupted and once stopped after ``stop`` epochs and resumed (in
    process): the same selection and the same history apart from wall times."""
    full = train_run(cfg, tmp_path / "full", progress=False)
    with pytest.raises(Interrupted):
        train_run(cfg, tmp_path / "cut", progress=False, stop_after_epochs=stop)
    resumed = train_run(cfg, tmp_path / "cut", progress=False)
    assert full["selection"] == resumed["selection"]

    def strip(history):
        return [{k: v for k, v in r.items() if k != "time"} for r in history]

    assert strip(run_history(tmp_path / "full", cfg)) == strip(run_history(tmp_path / "cut", cfg))


def resumed_checkpoints(tmp_path, cfg, stop: int) -> tuple[dict, dict]:
    """Train ``cfg`` once uninterrupted (into ``tmp_path/a``) and once stopped after ``stop``
    epochs and resumed (``tmp_path/b``); asserts the same selection and the same final weights and
    returns both ``last.ckpt`` (uninterrupted, resumed) for checks of the method state."""
    full = train_run(cfg, tmp_path / "a", progress=False)
    with pytest.raises(Interrupted):
        train_run(cfg, tmp_path / "b", progress=False, stop_after_epochs=stop)
    resumed = train_run(cfg, tmp_path / "b", progress=False, echo=lambda *_: None)
    assert full["selection"] == resumed["selection"]
    ck = [
        torch.load(tmp_path / r / cfg.dataset / cfg.run_name / "seed-0" / "last.ckpt", weights_only=False)
        for r in ("a", "b")
    ]
    assert all(torch.equal(ck[0]["model"][k], ck[1]["model"][k]) for k in ck[0]["model"])
    return ck[0], ck[1]


def cli_short_run(tmp_path, method: str, dataset: str = "mfeat", sets=()):
    """``mmbench run`` of ``method`` on ``dataset`` for 2 epochs on 10 training samples per class
    (plus ``--set`` values ``sets``) into ``tmp_path``; asserts it succeeds and returns (the seed-0
    run folder, its history)."""
    args = ["run", "-m", method, "-d", dataset, "--results", str(tmp_path), "--no-progress",
            "--set", "epochs=2", "--set", "data.limit_train_per_class=10"]
    for s in sets:
        args += ["--set", s]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    run = next((tmp_path / dataset).iterdir()) / "seed-0"
    return run, _history(run / "history.jsonl")


def assert_resume_equal(tmp_path, dataset: str, method: str, overrides: dict, stops: list[int]):
    """Train once uninterrupted, and once stopped after each count in ``stops`` and resumed;
    the histories (metrics, losses, diagnostics, selectability) and final weights must match."""
    cfg = resolve_config(dataset, method, overrides, seed=0, device="cpu")
    a = tmp_path / "a"
    b = tmp_path / "b"
    res_a = train_run(cfg, a, progress=False, echo=lambda *_: None)
    # each call resolves its config afresh, as a re-run `mmbench run` does; the last one resumes
    # through the CLI itself
    for k in stops:
        try:
            train_run(resolve_config(dataset, method, overrides, seed=0, device="cpu"), b, progress=False,
                      stop_after_epochs=k, echo=lambda *_: None)
        except Interrupted:
            pass
        else:  # pragma: no cover - the stop must interrupt
            raise AssertionError(f"stop_after_epochs={k} did not interrupt")
    sets = [a for k, v in overrides.items() for a in ("--set", f"{k}={str(v).lower() if isinstance(v, bool) else v}")]
    res = CliRunner().invoke(
        cli, ["run", "-m", method, "-d", dataset, "--results", str(b), "--device", "cpu", "--no-progress", *sets]
    )
    assert res.exit_code == 0, res.output
    assert "resuming" in res.output, res.output
    res_b = json.loads((b / dataset / cfg.run_name / "seed-0" / "result.json").read_text())
    run = f"{dataset}/{cfg.run_name}/seed-0"
    ha, hb = _history(a / run / "history.jsonl"), _history(b / run / "history.jsonl")
    assert len(ha) == len(hb) == cfg.train.epochs
    for ra, rb in zip(ha, hb):
        for key in ("epoch", "train", "val", "test", "diagnostics", "lr", "selectable"):
            assert ra[key] == rb[key], (ra["epoch"], key, ra[key], rb[key])
    assert res_a["selection"] == res_b["selection"]
    sa = torch.load(a / run / "last.ckpt", weights_only=False)["model"]
    sb = torch.load(b / run / "last.ckpt", weights_only=False)["model"]
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    return ha


def check_method_toml(method: str) -> None:
    """Every ``[datasets.*]`` key is a hyper-parameter with a ``[sources.*]`` entry, and every
    ``[official.*.train]`` key is a ``TrainConfig`` field with a source."""
    from dataclasses import fields

    from mmbench.benchmark.config import TrainConfig, method_preset

    pre = method_preset(method)
    hyper = {f.name for f in fields(get_method(method).Hyper)}
    assert pre["datasets"], method
    for ds, values in pre["datasets"].items():
        assert set(values) <= hyper, (ds, set(values) - hyper)
        assert set(values) <= set(pre["sources"][ds]), (ds, set(values) - set(pre["sources"][ds]))
        assert all(v.split("]")[0] in ("[code", "[paper", "[guess", "[shared") for v in pre["sources"][ds].values())
    train_keys = {f.name for f in fields(TrainConfig)}
    for ds, official in pre.get("official", {}).items():
        assert set(official["train"]) <= train_keys, ds
        assert set(official["train"]) <= set(official["sources"]) | {"momentum", "weight_decay", "step_size", "gamma"}
