"""The cost block of every record: FLOPs against an analytic count, and no effect on the run."""

import torch
import torch.nn as nn

from mmbench.benchmark import store
from mmbench.benchmark.config import parse_overrides, resolve_config
from mmbench.benchmark.cost import count_flops, measure_cost, trainable_params
from mmbench.benchmark.registry import get_dataset, get_method
from mmbench.benchmark.seeding import rng_state
from mmbench.benchmark.trainer import build_run, resolve_device, train_run

from conftest import TINY


def test_flops_of_a_known_layer_stack_match_the_analytic_count():
    """Linear(10, 20) -> ReLU -> Linear(20, 5) on 8 samples: forward 2*B*(10*20 + 20*5); a training
    step adds the weight gradients of both layers and the input gradient of the second only."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))
    x = torch.randn(8, 10)
    f1, f2 = 2 * 8 * 10 * 20, 2 * 8 * 20 * 5
    assert count_flops(net, x) == f1 + f2

    def step():
        net(x).sum().backward()

    assert count_flops(step) == (f1 + f2) + (f1 + 2 * f2)


def test_cost_fields_exist_in_every_new_record(tmp_path):
    cfg = resolve_config("mfeat", "joint", parse_overrides(TINY), seed=0)
    result = train_run(cfg, tmp_path, progress=False)
    cost = store.read_json(store.run_dir(tmp_path, "mfeat", cfg.run_name, 0) / store.RESULT)["cost"]
    assert cost == result["cost"]
    assert set(cost) >= {"params", "flops", "seconds_per_epoch", "peak_memory"}
    assert set(cost["params"]["encoders"]) == {"image", "fourier"}
    assert cost["params"]["total"] == sum(cost["params"]["encoders"].values()) + cost["params"]["heads"]
    assert cost["flops"]["train_step"] > 3 * cost["flops"]["eval_per_sample"] * cost["flops"]["train_batch"] * 0.9
    assert cost["seconds_per_epoch"]["epochs_timed"] == 2 and cost["seconds_per_epoch"]["train"] > 0
    assert cost["peak_memory"]["bytes"] > 0 and cost["peak_memory"]["kind"] == "cpu_peak_rss_process"


def test_unimodal_counts_only_the_encoder_it_trains(tmp_path):
    cfg = resolve_config("mfeat", "unimodal", parse_overrides([*TINY, "method.modality=fourier"]), seed=0)
    cost = train_run(cfg, tmp_path, progress=False)["cost"]
    assert set(cost["params"]["encoders"]) == {"fourier"}


def _state(run):
    model = {k: v.clone() for k, v in run.model.state_dict().items()}
    return model, repr(run.ctx.optimizers.state_dict()), rng_state(), run.ctx.global_step


def test_measuring_cost_changes_neither_weights_nor_optimisers_nor_rng():
    """The FLOP step runs on copies: the run's weights, optimiser state, RNG stream and step count
    are the same after measuring (sustained_boost: its method state grows in a step)."""
    for method in ("joint", "sustained_boost"):
        cfg = resolve_config("mfeat", method, parse_overrides(TINY), seed=0)
        spec = get_dataset("mfeat")
        run = build_run(cfg, spec, get_method(method), None, resolve_device("cpu"))
        before = _state(run)
        heads_before = repr(run.method.state_dict())
        measure_cost(run, [], torch.device("cpu"))
        after = _state(run)
        assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
        assert before[1] == after[1] and before[3] == after[3]
        assert torch.equal(before[2]["torch"], after[2]["torch"])
        assert before[2]["python"] == after[2]["python"]
        assert repr(run.method.state_dict()) == heads_before
        assert trainable_params(run.model)["total"] == sum(p.numel() for p in run.model.parameters())


def test_a_flop_step_that_fails_is_recorded_not_fatal(monkeypatch):
    from mmbench.benchmark import cost as cost_mod

    cfg = resolve_config("mfeat", "joint", parse_overrides(TINY), seed=0)
    run = build_run(cfg, get_dataset("mfeat"), get_method("joint"), None, resolve_device("cpu"))

    def broken(_run):
        raise RuntimeError("cannot copy")

    monkeypatch.setattr(cost_mod, "step_flops", broken)
    block = cost_mod.measure_cost(run, [], torch.device("cpu"))
    assert block["flops"]["train_step"] is None and "cannot copy" in block["flops"]["error"]
    assert block["params"]["total"] > 0
