"""The cost of a run, measured the same way for every method: the ``"cost"`` block of ``result.json``.

* ``params``: trainable parameters of each encoder the method trains (its ``active_modalities``)
  and of the heads (``requires_grad`` tensors of ``model.encoders[m]`` and ``model.heads``), and
  their total.
* ``flops``: ``torch.utils.flop_counter.FlopCounterMode`` totals of ONE real training step
  (``method.training_step`` on one batch of the train loader: forward, backward and the optimiser,
  whatever the method does in a step) and of ``method.predict`` on one eval batch, divided by its
  size (``eval_per_sample``). FlopCounterMode counts the matmul / convolution family (a multiply-add
  is 2 FLOPs); element-wise operations are not counted. The step runs on a deep copy of the model,
  the method and the optimisers (the loaders are shared, not copied) and the RNG state is restored
  afterwards, so measuring changes neither the run's weights nor its random stream.
* ``seconds_per_epoch``: mean of ``history[*]["time"]`` (``train_s``, ``eval_s``: wall seconds of
  the training pass and of evaluating val + test) over the epochs trained.
* ``peak_memory``: CUDA ``torch.cuda.max_memory_allocated`` of the run's device (reset when the
  run starts); on CPU the process's peak resident set size (``resource.getrusage(RUSAGE_SELF)
  .ru_maxrss``, a high-water mark of the whole process: in a sweep worker that trains several runs
  it is the largest so far, never less than this run's own peak).

The harness measures after the last epoch (the weights and method state at the end of training),
so methods whose step grows during training (``sustained_boost`` adds classifiers) report their
largest step.
"""

from __future__ import annotations

import copy
import resource
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from mmbench.benchmark.loaders import to_device
from mmbench.benchmark.seeding import rng_state, set_rng_state

COST_SCHEMA = 1


def trainable_params(model, modalities=None) -> dict:
    """``{"encoders": {m: n}, "heads": n, "total": n}``: ``requires_grad`` parameters of the
    encoders the method trains (``modalities``, default all: ``unimodal`` trains one) and the heads."""
    def count(module) -> int:
        return int(sum(p.numel() for p in module.parameters() if p.requires_grad))

    used = set(model.encoders) if modalities is None else set(modalities)
    encoders = {m: count(enc) for m, enc in model.encoders.items() if m in used}
    heads = count(model.heads)
    return {"encoders": encoders, "heads": heads, "total": sum(encoders.values()) + heads}


def count_flops(fn, *args, **kwargs) -> int:
    """Total FLOPs ``FlopCounterMode`` counts while ``fn(*args, **kwargs)`` runs."""
    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def _copies(run):
    """Deep copies of (method, model, ctx) sharing the loaders with the real run."""
    ctx = run.ctx
    shared = [ctx.train_loader, ctx.heldout_loader, ctx.val_loader, run.train_loader, run.val_loader,
              run.test_loader]
    memo = {id(x): x for x in shared if x is not None}
    return copy.deepcopy((run.method, run.model, ctx), memo)


def step_flops(run) -> dict:
    """FLOPs of one training step and per eval sample, on copies (see the module docstring)."""
    saved = rng_state()
    try:
        method, model, ctx = _copies(run)
        batch = to_device(next(iter(run.train_loader)), ctx.device)
        model.train()
        train = count_flops(method.training_step, model, batch, ctx)
        eval_batch = to_device(next(iter(run.val_loader)), ctx.device)
        model.eval()
        with torch.no_grad(), ctx.autocast():
            evaluation = count_flops(method.predict, model, eval_batch)
        n_eval = int(eval_batch["label"].shape[0])
    finally:
        set_rng_state(saved)
    return {
        "train_step": train,
        "train_batch": int(batch["label"].shape[0]),
        "eval_per_sample": evaluation / max(n_eval, 1),
    }


def seconds_per_epoch(history: list[dict]) -> dict:
    """Mean wall seconds of the training pass and of evaluation per epoch (``None`` when unknown)."""
    times = [h.get("time") or {} for h in history]
    out = {}
    for key, name in (("train_s", "train"), ("eval_s", "eval")):
        values = [t[key] for t in times if t.get(key) is not None]
        out[name] = round(sum(values) / len(values), 4) if values else None
    out["epochs_timed"] = len(times)
    return out


def reset_peak_memory(device: torch.device) -> None:
    """Start the CUDA peak-memory counter of this run (nothing to reset on CPU)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict:
    """``{"bytes", "kind"}``: CUDA max_memory_allocated, else the process's peak RSS."""
    if device.type == "cuda":
        return {"bytes": int(torch.cuda.max_memory_allocated(device)), "kind": "cuda_max_memory_allocated"}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return {"bytes": int(rss * scale), "kind": "cpu_peak_rss_process"}


def measure_cost(run, history: list[dict], device: torch.device) -> dict:
    """The ``"cost"`` block of ``result.json`` (peak memory read before the FLOP step's copies).
    A FLOP step that cannot run (say, a module that cannot be copied) is recorded as ``None``
    with its ``error``; the record is still written."""
    memory = peak_memory(device)
    try:
        flops = step_flops(run)
    except Exception as exc:  # noqa: BLE001 - a measurement must never cost the finished record
        flops = {"train_step": None, "eval_per_sample": None, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "schema": COST_SCHEMA,
        "params": trainable_params(run.model, run.method.active_modalities),
        "flops": flops,
        "seconds_per_epoch": seconds_per_epoch(history),
        "peak_memory": memory,
        "device": str(device),
    }
