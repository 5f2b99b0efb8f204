"""The harness loop: everything that is the same for every method.

One call of ``train_run`` trains one run ``(dataset, method, config, seed)``: data check, seeding,
identical backbones, the method's heads and optimisers, the epoch loop (scheduler stepped at the
start or end of each epoch, ``train.step_at``), evaluation of val and test with the method's
``predict`` after every epoch, history, an atomic checkpoint after every epoch, resume from it,
and ``result.json`` with every selection rule (specs/methods/evaluation.md).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

import mmbench
from mmbench.benchmark import store
from mmbench.benchmark.config import SPEED_KEYS, RunConfig
from mmbench.benchmark.context import Context
from mmbench.benchmark.identity import identity_hash
from mmbench.benchmark.loaders import EpochLoader, to_device
from mmbench.benchmark.metrics import head_metrics
from mmbench.benchmark.registry import get_dataset, get_method, method_origin
from mmbench.benchmark.seeding import rng_state, seed_everything, set_rng_state
from mmbench.benchmark.selection import select_all, select_epoch
from mmbench.datasets.base import stratified_carve
from mmbench.errors import ConfigError, DataError, MMBenchError, NonFiniteLossError

BEST_RULES = ("val", "test-best")  # the rules whose weights best.ckpt keeps


class MultimodalModel(nn.Module):
    """``encoders`` (built by the dataset, never changed by a method) and ``heads`` (the method's)."""

    def __init__(self, encoders: nn.ModuleDict, heads: nn.Module):
        super().__init__()
        self.encoders = encoders
        self.heads = heads


class Interrupted(MMBenchError):
    """The run stopped before its last epoch (Ctrl-C, or ``stop_after_epochs``); it resumes."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return torch.device(name)


def amp_dtype(train_cfg, device: torch.device) -> torch.dtype | None:
    if train_cfg.amp == "off":
        return None
    if train_cfg.amp == "bf16":
        return torch.bfloat16
    if train_cfg.amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    raise ConfigError(f"unknown train.amp {train_cfg.amp!r}; choose auto, bf16 or off")


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(mmbench.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device) -> dict:
    return {
        "mmbench": mmbench.__version__,
        "git_sha": _git_sha(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "python": platform.python_version(),
        # CPU results depend on the thread count in the last bits (reduction order)
        "torch_threads": torch.get_num_threads(),
        "host": platform.node(),
    }


def check_data(spec, root, data_cfg) -> tuple[Path | None, list[str]]:
    """Resolve the root and run ``spec.check``; raise one ``DataError`` on errors, return warnings."""
    resolved = spec.resolve_root(root)
    if resolved is not None and not resolved.exists():
        raise DataError(
            f"data root {resolved} does not exist: put the {spec.name} dataset there, "
            f"or pass --root DIR (or set MMBENCH_DATA so that $MMBENCH_DATA/{spec.name} holds it)"
        )
    problems = spec.check(resolved, data_cfg)
    errors = [p.message for p in problems if p.level == "error"]
    if errors:
        more = f" (+{len(errors) - 1} more; run `mmbench data check {spec.name}`)" if len(errors) > 1 else ""
        raise DataError(f"{spec.name} data check failed: {errors[0]}{more}")
    return resolved, [p.message for p in problems if p.level != "error"]


@torch.no_grad()
def evaluate(method, model, loader, device, autocast) -> dict:
    """METRICS of every head on one split (eval mode, whole split, no augmentation)."""
    model.eval()
    outs: dict[str, list] = {}
    labels = []
    for batch in loader:
        batch = to_device(batch, device)
        with autocast():
            pred = method.predict(model, batch)
        for k, v in pred.items():
            outs.setdefault(k, []).append(v.float())
        labels.append(batch["label"])
    model.train()
    y = torch.cat(labels)
    return head_metrics({k: torch.cat(v) for k, v in outs.items()}, y)


def _config_key(cfg_dict: dict) -> dict:
    """The parts of a config that must match for a checkpoint to be resumed."""
    key = {k: copy.deepcopy(cfg_dict[k]) for k in ("dataset", "method", "seed", "protocol", "train", "data", "method_params")}
    for dotted in SPEED_KEYS:
        section, name = dotted.split(".")
        key[section].pop(name, None)
    return key


def train_run(
    cfg: RunConfig,
    results_root,
    root=None,
    progress: bool = True,
    stop_after_epochs: int | None = None,
    echo=print,
) -> dict:
    """Train one run and return its ``result.json`` record.

    Resumes from ``last.ckpt`` when present. ``stop_after_epochs`` stops (resumably) after that
    many epochs in this call, as a preempted job would. Raises ``NonFiniteLossError`` after
    writing a failed record, ``Interrupted`` on Ctrl-C (the checkpoint of the last finished epoch
    stays), ``MMBenchError`` on bad input.
    """
    spec = get_dataset(cfg.dataset)
    method_cls = get_method(cfg.method)
    out_dir = store.run_dir(results_root, cfg.dataset, cfg.run_name, cfg.seed)
    device = resolve_device(cfg.device)
    data_root, warnings_ = check_data(spec, root, cfg.data)
    for w in warnings_:
        echo(f"warning: {w}")

    ckpt_path = out_dir / store.CHECKPOINT
    ckpt = None
    if ckpt_path.is_file():
        try:
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - a corrupt file must not stop the run
            echo(f"warning: unreadable checkpoint {ckpt_path} ({exc}); starting this seed again")
            ckpt = None
        if ckpt is not None and _config_key(ckpt["config"]) != _config_key(cfg.to_dict()):
            raise ConfigError(
                f"{ckpt_path} was written with a different configuration; delete {out_dir} "
                "or choose another --tag to keep both"
            )

    run = build_run(cfg, spec, method_cls, data_root, device, ckpt)
    method, model, ctx = run.method, run.model, run.ctx
    train_loader, val_loader, test_loader = run.train_loader, run.val_loader, run.test_loader
    tr = cfg.train

    history: list[dict] = []
    start_epoch = 0
    if ckpt is not None:
        history = ckpt["history"]
        start_epoch = ckpt["epoch"] + 1
        ctx.global_step = ckpt["global_step"]
        set_rng_state(ckpt["rng"])
        echo(f"resuming {out_dir} from epoch {start_epoch}")
    env = environment(device)
    env["method_package"] = method_origin(cfg.method)  # plugin runs trace to their version
    store.write_json(
        out_dir / store.CONFIG,
        {**cfg.to_dict(), "environment": env, "splits": run.split_sizes, "data_warnings": warnings_},
    )
    store.write_history(out_dir / store.HISTORY, history)

    best = read_best(out_dir / store.BEST, echo) if ckpt is not None else None
    t_start = time.time()
    epochs_done = 0
    seen_warnings: set[str] = set()
    try:
        for epoch in range(start_epoch, tr.epochs):
            if stop_after_epochs is not None and epochs_done >= stop_after_epochs:
                raise Interrupted(f"stopped after {epochs_done} epochs in this call")
            ctx.start_epoch(epoch)
            if tr.step_at == "epoch_start":
                _step_schedulers(ctx.optimizers)
            method.on_epoch_start(ctx)
            train_loader.set_epoch(epoch)
            t0 = time.time()
            train_logs = _train_epoch(method, model, train_loader, ctx, cfg, progress)
            train_s = time.time() - t0
            bad = [k for k, v in train_logs.items() if k.startswith("loss") and not _finite(v)]
            if bad:
                raise NonFiniteLossError(epoch, bad[0])
            if tr.step_at == "epoch_end":
                _step_schedulers(ctx.optimizers)
            t0 = time.time()
            autocast = ctx.autocast
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                val_m = evaluate(method, model, val_loader, device, autocast)
                test_m = evaluate(method, model, test_loader, device, autocast)
            for w in caught:  # e.g. MAP's "no positive sample" warning: once per run, not per epoch
                text = str(w.message)
                if text not in seen_warnings:
                    seen_warnings.add(text)
                    echo(f"warning: {text}")
            eval_s = time.time() - t0
            ctx.val_metrics = val_m
            method.on_epoch_end(ctx)
            diagnostics = ctx.collect_diagnostics()
            diagnostics.update(method.epoch_diagnostics())
            record = {
                "epoch": epoch,
                "train": train_logs,
                "val": val_m,
                "test": test_m,
                "diagnostics": diagnostics,
                "lr": ctx.optimizers.lrs(),
                "selectable": ctx.selectable,
                "time": {"train_s": round(train_s, 4), "eval_s": round(eval_s, 4)},
            }
            history.append(record)
            store.write_history(out_dir / store.HISTORY, history)
            best = update_best(out_dir / store.BEST, best, cfg, history, model, method)
            store.write_checkpoint(
                ckpt_path,
                {
                    "epoch": epoch,
                    "global_step": ctx.global_step,
                    "model": model.state_dict(),
                    "optimizers": ctx.optimizers.state_dict(),
                    "method": method.state_dict(),
                    "rng": rng_state(),
                    "history": history,
                    "config": cfg.to_dict(),
                },
            )
            epochs_done += 1
    except NonFiniteLossError as exc:
        result = _result(cfg, history, status="failed", error=str(exc))
        result["failed_epoch"] = exc.epoch
        store.write_json(out_dir / store.RESULT, result)
        raise
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted; {len(history)} finished epochs are checkpointed in {out_dir}: "
            "run the same command again to resume"
        ) from None

    result = _result(cfg, history, status="finished", error=None)
    result["checkpoints"] = best_checkpoints(best, result["selection"])
    result["seconds"] = round(time.time() - t_start, 2)
    result["epochs"] = tr.epochs
    store.write_json(out_dir / store.RESULT, result)
    return result


@dataclass
class RunState:
    """Everything one run trains with: the method, the model, the loaders and the context."""

    method: object
    model: MultimodalModel
    ctx: Context
    train_loader: EpochLoader
    val_loader: EpochLoader
    test_loader: EpochLoader
    split_sizes: dict


def build_run(cfg: RunConfig, spec, method_cls, data_root, device: torch.device, ckpt: dict | None = None) -> RunState:
    """Seed, build data, identical backbones, the method's heads and optimisers (restored from
    ``ckpt`` when resuming, in the hook order of ``Method``), loaders and the ``Context``."""
    seed_everything(cfg.seed)
    # ---- data
    train_set = spec.build("train", data_root, True, cfg.data)
    val_set = spec.build("val", data_root, False, cfg.data)
    test_set = spec.build("test", data_root, False, cfg.data)
    hyper = method_cls.make_hyper(cfg.method_params)

    # ---- model: encoders first (same initialisation for every method under one seed)
    factories = spec.backbones(cfg.data)
    encoders = nn.ModuleDict({m: factories[m][0]() for m in spec.modalities})
    feature_dims = {m: factories[m][1] for m in spec.modalities}
    method = method_cls(hyper, spec.modalities, spec.num_classes, feature_dims)

    heldout_set = None
    frac = method.heldout_fraction()
    if frac > 0:
        kept, carved = stratified_carve(train_set.labels, frac, cfg.data.split_seed)
        heldout_set = _subset(train_set, carved)
        train_set = _subset(train_set, kept)

    if ckpt is not None:
        method.load_state_dict(ckpt["method"])
    model = MultimodalModel(encoders, method.build_heads(feature_dims, spec.num_classes))
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
    model.to(device)
    if device.type == "cuda" and cfg.train.channels_last:
        apply_channels_last(model)
    if cfg.train.compile:
        for m in spec.modalities:
            model.encoders[m].compile()  # in place: state_dict keys (and checkpoints) unchanged
    optimizers = method.configure_optimizers(model, cfg.train)
    if ckpt is not None and "optimizers" in ckpt:
        optimizers.load_state_dict(ckpt["optimizers"])

    tr = cfg.train
    pin = cfg.data.pin_memory and device.type == "cuda"
    persistent = cfg.data.persistent_workers
    loader_kw = {
        "num_workers": loader_workers(cfg.data.num_workers, train_set, device),
        "pin_memory": pin,
        "persistent_workers": device.type == "cuda" if persistent is None else persistent,
        "device": device,  # where a dataset's device_transform runs (data.cache.augment=device)
    }
    train_loader = EpochLoader(train_set, tr.batch_size, True, cfg.seed, tr.drop_last, **loader_kw)
    val_loader = EpochLoader(val_set, tr.eval_batch_size, False, **loader_kw)
    test_loader = EpochLoader(test_set, tr.eval_batch_size, False, **loader_kw)
    heldout_loader = (
        EpochLoader(heldout_set, tr.eval_batch_size, False, **loader_kw) if heldout_set is not None else None
    )

    ctx = Context(
        model=model,
        optimizers=optimizers,
        device=device,
        train_cfg=tr,
        modalities=spec.modalities,
        num_classes=spec.num_classes,
        seed=cfg.seed,
        epochs=tr.epochs,
        train_loader=train_loader,
        heldout_loader=heldout_loader,
        val_loader=val_loader,
        amp_dtype=amp_dtype(tr, device),
    )

    return RunState(
        method, model, ctx, train_loader, val_loader, test_loader,
        _split_sizes(train_set, val_set, test_set, heldout_set),
    )


def apply_channels_last(model: nn.Module) -> None:
    """channels_last for 2-D convolutions only (3-D convs such as I3D's keep their layout)."""
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            mod.to(memory_format=torch.channels_last)


def loader_workers(requested: int, dataset, device: torch.device) -> int:
    """``data.num_workers``; -1 (default) = 0 for in-memory datasets, and on CPU for datasets that
    build whole batches (the decoded cache's ``get_batch``: 20x decoding with 0 workers against
    4.4x with 2 on a 2-core CPU, BENCHMARKS.md); else min(8, cores) on CUDA, min(2, cores) on CPU."""
    if requested >= 0:
        return requested
    if hasattr(dataset, "batch") and hasattr(dataset, "tensors"):
        return 0
    if device.type == "cpu" and hasattr(dataset, "get_batch"):
        return 0
    cores = os.cpu_count() or 1
    return min(8 if device.type == "cuda" else 2, cores)


def _subset(dataset, positions):
    if hasattr(dataset, "subset"):
        return dataset.subset(positions)
    sub = torch.utils.data.Subset(dataset, positions)
    sub.labels = [dataset.labels[i] for i in positions]
    return sub


def _split_sizes(train, val, test, heldout) -> dict:
    """Sizes of each split and the sha256 of its sorted item indices (specs/datasets.md §1.3)."""
    out = {}
    for name, ds in (("train", train), ("val", val), ("test", test), ("heldout", heldout)):
        if ds is None:
            continue
        out[name] = len(ds)
        if getattr(ds, "dropped", None):
            out[f"{name}_dropped"] = ds.dropped
        idx = _item_indices(ds)
        if idx is not None:
            out[f"{name}_sha256"] = hashlib.sha256(json.dumps(sorted(idx)).encode()).hexdigest()
    return out


def _item_indices(ds) -> list[int] | None:
    indices = getattr(ds, "indices", None)
    if isinstance(indices, torch.Tensor):
        return indices.tolist()
    if isinstance(indices, (list, tuple)) and all(isinstance(i, int) for i in indices):
        return list(indices)
    return None


def _weights(model: nn.Module, method, epoch: int) -> dict:
    """A detached CPU copy of the model's and the method's state at ``epoch``."""
    return {
        "epoch": epoch,
        "model": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
        "method": copy.deepcopy(method.state_dict()),
    }


def read_best(path: Path, echo=print) -> dict | None:
    """The ``best.ckpt`` of a resumed run (None if absent or unreadable: it is rebuilt from the
    epochs still to come, and the record then says which rule has no weights)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a damaged best.ckpt must not stop the run
        echo(f"warning: unreadable {path} ({exc}); selected weights of earlier epochs are lost")
        return None


def update_best(path: Path, best: dict | None, cfg: RunConfig, history, model, method) -> dict:
    """Keep ``best.ckpt`` = the weights at the epoch each rule (``val``, ``test-best``) selects
    over ``history`` so far (ARCHITECTURE.md, "Runs and results"); written only when the latest
    epoch becomes a selected one."""
    epoch = history[-1]["epoch"]
    best = best or {"schema": 1, "config": cfg.to_dict(), "rules": {}}
    chosen = [r for r in BEST_RULES if select_epoch(history, r, cfg.select_tie) == epoch]
    if chosen:
        weights = _weights(model, method, epoch)
        for rule in chosen:
            best["rules"][rule] = weights
        store.write_checkpoint(path, best)
    return best


def best_checkpoints(best: dict | None, selection: dict) -> dict:
    """``result.json``'s ``checkpoints`` block: per rule, the epoch whose weights ``best.ckpt``
    holds; ``"file": null`` where they are missing or belong to another epoch than the one selected."""
    out = {}
    for rule in BEST_RULES:
        held = ((best or {}).get("rules") or {}).get(rule)
        wanted = selection.get(rule, {}).get("epoch")
        ok = held is not None and held["epoch"] == wanted
        out[rule] = {"epoch": wanted, "file": store.BEST if ok else None}
    return out


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _step_schedulers(optimizers) -> None:
    with warnings.catch_warnings():
        # the official AUG order (scheduler before optimiser) is deliberate: train.step_at
        warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
        optimizers.step_schedulers()


def _train_epoch(method, model, loader, ctx, cfg, progress) -> dict:
    model.train()
    sums: dict = {}
    n = 0
    bar = tqdm(
        loader,
        total=len(loader),
        desc=f"seed {cfg.seed} epoch {ctx.epoch + 1}/{ctx.epochs}",
        leave=False,
        disable=(not progress) or not sys.stderr.isatty(),
        dynamic_ncols=True,
    )
    with bar:
        for batch in bar:
            batch = to_device(batch, ctx.device)
            out = method.training_step(model, batch, ctx)
            for k, v in out.items():
                v = v.detach().float() if isinstance(v, torch.Tensor) else float(v)
                sums[k] = sums[k] + v if k in sums else v
            n += 1
            ctx.step_in_epoch += 1
            ctx.global_step += 1
    logs = {}
    for k, v in sums.items():
        mean = v / max(n, 1)
        logs[k] = float(mean.item()) if isinstance(mean, torch.Tensor) else float(mean)
    return logs


def _result(cfg: RunConfig, history: list[dict], status: str, error: str | None) -> dict:
    return {
        "schema_version": store.SCHEMA_VERSION,
        "identity": {"hash": identity_hash(cfg)},
        "dataset": cfg.dataset,
        "method": cfg.method,
        "tag": cfg.tag,
        "seed": cfg.seed,
        "status": status,
        "error": error,
        "selection": select_all(history, cfg.select_tie) if status == "finished" else {},
        "config": {"train": asdict(cfg.train), "method": cfg.method_params, "protocol": cfg.protocol},
    }
