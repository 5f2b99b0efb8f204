"""The harness loop: everything that is the same for every method.

One call of ``train_run`` trains one run ``(dataset, method, config, seed)``: data check, seeding,
identical backbones, the method's heads and optimisers, the epoch loop (scheduler stepped at the
start or end of each epoch, ``train.step_at``), evaluation of val and test with the method's
``predict`` after every epoch, history, an atomic checkpoint after every epoch, resume from it,
and ``result.json`` with every selection rule (``selection.py``).

``train_run`` is a sequence of named steps: take the seed's lock (``runstate.seed_lock``), refuse
a seed recorded meanwhile (``refuse_recorded``), compute with ``train.threads`` threads
(``torch_threads``), ``start_session`` (checkpoint, build, config.json once, a run-log line),
``run_epochs`` (``run_epoch`` -> ``save_epoch`` -> ``log_epoch``), ``finish_session``. The
record format is docs/records.md.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

from mmbench.benchmark import replace, runstate, unimodal_init
from mmbench.benchmark.config import SPEED_KEYS, RunConfig, speed_keys
from mmbench.benchmark.config_checks import nonfinite_hint
from mmbench.benchmark.context import Context
from mmbench.benchmark.cost import measure_cost, reset_peak_memory
from mmbench.benchmark.folds import cv_record, folded_spec
from mmbench.benchmark.identity import hash_identity, identity_config, identity_hash, run_components
from mmbench.benchmark.loaders import EpochLoader, to_device
from mmbench.benchmark.metrics import head_metrics
from mmbench.benchmark.passes import InitialEncoders
from mmbench.benchmark.plan import planned_loader
from mmbench.benchmark.provenance import environment, reproducibility, runlog_entry
from mmbench.benchmark.registry import get_dataset, get_method, method_origin
from mmbench.benchmark.seeding import rng_state, seed_everything, set_rng_state, torch_threads
from mmbench.benchmark.selection import select_all, select_epoch
from mmbench.datasets.base import as_built, counted_carve, stratified_carve
from mmbench.results import record_schema, store
from mmbench.results.errors import ConfigError, DataError, MediaError, MMBenchError, NonFiniteLossError
from mmbench.trackers import live as trackers

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


def check_data(spec, root, data_cfg) -> tuple[Path | None, list[str]]:
    """Resolve the root and run ``spec.check``; raise one ``DataError`` on errors, return warnings."""
    resolved = spec.resolve_root(root)
    if resolved is not None and not resolved.exists():
        raise DataError(
            f"data root {resolved} does not exist: put the {spec.name} dataset there, "
            f"or pass --root DIR (or set MMBENCH_DATA so that $MMBENCH_DATA/{spec.name} holds it)"
        )
    from mmbench.datasets._checks import collapse_counts

    problems = collapse_counts(spec.check(resolved, data_cfg), spec.name)
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
    """The parts of a config that must match for a checkpoint to be resumed (normalised through
    ``RunConfig`` so a checkpoint from before a new setting existed compares with its default)."""
    cfg_dict = RunConfig.from_dict(cfg_dict).to_dict()
    key = {k: copy.deepcopy(cfg_dict[k]) for k in ("dataset", "method", "seed", "protocol", "train", "data", "method_params")}
    for dotted in speed_keys(cfg_dict["method"], cfg_dict["method_params"]):
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
    rerun: bool = False,
) -> dict:
    """Train one run and return its ``result.json`` record.

    Holds the seed's lock (``runstate.SeedBusy`` when another process trains it), computes with
    ``train.threads`` threads, resumes from ``last.ckpt`` when present (``rerun``: clears the seed's
    records first). ``stop_after_epochs`` stops (resumably) after that many epochs in this call, as a
    preempted job would. Raises ``NonFiniteLossError`` or ``MediaError`` after writing a failed
    record, ``Interrupted`` on Ctrl-C (the checkpoint of the last finished epoch stays),
    ``runstate.SeedDone`` when the seed got a record meanwhile, ``MMBenchError`` on bad input.
    """
    spec = get_dataset(cfg.dataset)
    out_dir = store.run_dir(results_root, cfg.dataset, cfg.run_name, cfg.seed)
    device = resolve_device(cfg.device)
    data_root, warnings_ = check_data(spec, root, cfg.data)
    fresh = rerun or not (out_dir / store.CHECKPOINT).is_file()
    references = unimodal_init.references_for(cfg, results_root, spec.modalities, fresh)  # refuse first
    store.check_writable(out_dir)  # a read-only or full disk is one line before training starts
    with runstate.seed_lock(out_dir), (replace.replacing(out_dir) if rerun else contextlib.nullcontext()):
        if not rerun:
            refuse_recorded(out_dir, cfg)
        with torch_threads(cfg.train.threads):
            session = start_session(cfg, spec, out_dir, data_root, device, warnings_, echo, references)
            with trackers.attached(session):  # train.loggers: fed from history.jsonl after each epoch
                run_epochs(session, progress, stop_after_epochs)
                result = finish_session(session)
            replace.drop(out_dir)  # old records set aside by a --rerun submitted earlier (clear_seed)
            return result


def clear_seed(out_dir: Path) -> None:
    """``--rerun`` of a submitted array: move the seed's records aside (``replace.set_aside``;
    deleted when the new record is written). The run log stays and gets a new ``start`` line."""
    replace.set_aside(out_dir)


def refuse_recorded(out_dir: Path, cfg: RunConfig) -> None:
    """Under the lock: stop when the seed got a record since the caller looked (another process
    finished it), or when it holds another config or an unreadable file."""
    state = runstate.seed_status(out_dir, cfg)
    if state.refused:
        raise ConfigError(state.reason)
    if state.status in ("finished", "failed"):
        raise runstate.SeedDone(state.reason)


@dataclass
class Session:
    """One call of ``train_run``: the built run, its history so far and where it writes."""

    cfg: RunConfig
    spec: object
    out_dir: Path
    run: BuiltRun
    history: list
    start_epoch: int
    best: dict | None
    echo: object
    t_start: float
    seen_warnings: set
    initialised_from: dict | None = None  # init_from_unimodal: the reference runs used
    teachers_from: dict | None = None  # needs_unimodal_teachers: the reference runs distilled from


def load_checkpoint(cfg: RunConfig, out_dir: Path, echo) -> dict | None:
    """``last.ckpt`` of a partial run (None when absent or unreadable); a checkpoint of another
    config is refused."""
    ckpt_path = out_dir / store.CHECKPOINT
    if not ckpt_path.is_file():
        return None
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a corrupt file must not stop the run
        echo(f"warning: unreadable checkpoint {ckpt_path} ({exc}); starting this seed again")
        return None
    if problems := record_schema.check_checkpoint(ckpt):
        raise ConfigError(f"{ckpt_path} is not a checkpoint mmbench can resume (field "
                          f"{record_schema.first_problem(problems)}); use --rerun to train the seed again")
    if _config_key(ckpt["config"]) != _config_key(cfg.to_dict()):
        raise ConfigError(
            f"{ckpt_path} was written with a different configuration; use --rerun to replace it "
            "or choose another --tag to keep both"
        )
    return ckpt


def start_session(cfg, spec, out_dir: Path, data_root, device, warnings_, echo, references=None) -> Session:
    """Build the run (restored from ``last.ckpt``; a fresh run with ``references`` starts from the
    unimodal runs' selected weights), write ``config.json`` once and append this start to
    ``runlog.jsonl``."""
    for w in warnings_:
        echo(f"warning: {w}")
    ckpt = load_checkpoint(cfg, out_dir, echo)
    reset_peak_memory(device)
    run = build_run(cfg, spec, get_method(cfg.method), data_root, device, ckpt)
    initialised_from, teachers_from = unimodal_init.attach_references(run, cfg, spec, references, ckpt, data_root)
    history, start_epoch, best = [], 0, None
    if ckpt is not None:
        history, start_epoch = ckpt["history"], ckpt["epoch"] + 1
        run.ctx.global_step = ckpt["global_step"]
        set_rng_state(ckpt["rng"])
        best = read_best(out_dir / store.BEST, echo)
        echo(f"resuming {out_dir} from epoch {start_epoch}")
    env = environment(device)
    env["method_package"] = method_origin(cfg.method)  # plugin runs trace to their version
    write_config_once(out_dir, cfg, env, run.split_sizes, warnings_)
    speed = {k: _dotted(cfg, k) for k in SPEED_KEYS}
    store.append_jsonl(out_dir / store.RUNLOG, runlog_entry("resume" if ckpt else "start", start_epoch, env, speed))
    store.write_history(out_dir / store.HISTORY, history)
    return Session(
        cfg, spec, out_dir, run, history, start_epoch, best, echo, time.time(), set(), initialised_from, teachers_from
    )


def _dotted(cfg: RunConfig, dotted: str):
    section, name = dotted.split(".")
    return getattr(getattr(cfg, section), name)


def write_config_once(out_dir: Path, cfg: RunConfig, env: dict, splits: dict, warnings_) -> None:
    """``config.json``: the resolved config, its identity (config and hash), the environment of
    the first start, the split sizes. Never rewritten by a resume (the run log records those)."""
    path = out_dir / store.CONFIG
    if path.is_file():
        return
    components = run_components(cfg)
    ident = identity_config(cfg, components)
    store.write_json(
        path,
        {
            **cfg.to_dict(),
            "identity": {"hash": hash_identity(ident), "config": ident, "components": components},
            "environment": env,
            "splits": splits,
            "data_warnings": warnings_,
        },
    )


def run_epochs(session: Session, progress: bool, stop_after_epochs: int | None) -> None:
    """The epoch loop from ``session.start_epoch``; a NaN loss or an undecodable file writes a
    failed record and re-raises (as one line); Ctrl-C becomes ``Interrupted``."""
    epochs_done = 0
    try:
        for epoch in range(session.start_epoch, session.cfg.train.epochs):
            if stop_after_epochs is not None and epochs_done >= stop_after_epochs:
                raise Interrupted(f"stopped after {epochs_done} epochs in this call")
            record = run_epoch(session, epoch, progress)
            save_epoch(session, record)
            log_epoch(session, record, progress)
            epochs_done += 1
    except NonFiniteLossError as exc:
        write_failed(session, str(exc), failed_epoch=exc.epoch)
        raise
    except MediaError as exc:
        message = MediaError.one_line(exc)
        write_failed(session, message, failed_epoch=session.start_epoch + epochs_done)
        raise MediaError(message) from None
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted; {len(session.history)} finished epochs are checkpointed in {session.out_dir}: "
            "run the same command again to resume"
        ) from None


def run_epoch(session: Session, epoch: int, progress: bool) -> dict:
    """Train one epoch (schedulers at ``train.step_at``), evaluate val and test: its history line."""
    cfg, run = session.cfg, session.run
    method, model, ctx = run.method, run.model, run.ctx
    ctx.start_epoch(epoch)
    if cfg.train.step_at == "epoch_start":
        _step_schedulers(ctx.optimizers)
    method.on_epoch_start(ctx)
    run.train_loader.set_epoch(epoch)
    loader = planned_loader(run.train_loader, method.item_plan(ctx), len(ctx.modalities))
    t0 = time.time()
    train_logs = _train_epoch(method, model, loader, ctx, cfg, progress)
    train_s = time.time() - t0
    bad = [k for k, v in train_logs.items() if k.startswith("loss") and not _finite(v)]
    if bad:
        raise NonFiniteLossError(epoch, bad[0], nonfinite_hint(cfg))
    if cfg.train.step_at == "epoch_end":
        _step_schedulers(ctx.optimizers)
    method.before_evaluation(ctx)
    t0 = time.time()
    val_m, test_m = evaluate_splits(session)
    eval_s = time.time() - t0
    ctx.val_metrics = val_m
    method.on_epoch_end(ctx)
    diagnostics = ctx.collect_diagnostics()
    diagnostics.update(method.epoch_diagnostics())
    return {
        "epoch": epoch,
        "train": train_logs,
        "val": val_m,
        "test": test_m,
        "diagnostics": diagnostics,
        "lr": ctx.optimizers.lrs(),
        "selectable": ctx.selectable,
        "time": {"train_s": round(train_s, 4), "eval_s": round(eval_s, 4)},
    }


def evaluate_splits(session: Session) -> tuple[dict, dict]:
    """val (None without a validation split) and test METRICS; each distinct warning (e.g. MAP's
    "no positive sample") once per run."""
    run = session.run
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        val_m = None
        if run.val_loader is not None:
            val_m = evaluate(run.method, run.model, run.val_loader, run.ctx.device, run.ctx.autocast)
        test_m = None  # train.eval_test = false (tuning trials): test is never evaluated
        if session.cfg.train.eval_test:
            test_m = evaluate(run.method, run.model, run.test_loader, run.ctx.device, run.ctx.autocast)
    for w in caught:
        text = str(w.message)
        if text not in session.seen_warnings:
            session.seen_warnings.add(text)
            session.echo(f"warning: {text}")
    return val_m, test_m


def save_epoch(session: Session, record: dict) -> None:
    """Append the epoch to history.jsonl, update best.ckpt, write last.ckpt (all atomic)."""
    run, out_dir = session.run, session.out_dir
    session.history.append(record)
    store.write_history(out_dir / store.HISTORY, session.history)
    session.best = update_best(out_dir / store.BEST, session.best, session.cfg, session.history, run.model, run.method)
    store.write_checkpoint(
        out_dir / store.CHECKPOINT,
        {
            "epoch": record["epoch"],
            "global_step": run.ctx.global_step,
            "model": run.model.state_dict(),
            "optimizers": run.ctx.optimizers.state_dict(),
            "method": run.method.state_dict(),
            "rng": rng_state(),
            "history": session.history,
            "config": session.cfg.to_dict(),
            "initialised_from": session.initialised_from,
            "teachers_from": session.teachers_from,
        },
    )
    trackers.epoch_written(session)  # the epoch is on disk: the loggers read it from there


def epoch_line(cfg: RunConfig, record: dict) -> str:
    """``seed 0 epoch 3/20: loss 1.2345 loss_a 0.9 | val acc 45.67 | 12.3s``."""
    losses = " ".join(f"{k} {v:.4f}" for k, v in record["train"].items() if k.startswith("loss"))
    val = ((record["val"] or {}).get("fusion") or {}).get("acc")
    val_text = f"val acc {100 * val:.2f}" if val is not None else "val acc -"
    seconds = record["time"]["train_s"] + record["time"]["eval_s"]
    return f"seed {cfg.seed} epoch {record['epoch'] + 1}/{cfg.train.epochs}: {losses} | {val_text} | {seconds:.1f}s"


def log_epoch(session: Session, record: dict, progress: bool) -> None:
    """One line per epoch where no progress bar shows: stdout is not a terminal (nohup, a log
    file, SLURM) or progress bars are off."""
    if not (progress and sys.stdout.isatty()):
        session.echo(epoch_line(session.cfg, record))


def training_seconds(history: list[dict]) -> float:
    """The seed's total training time: train + eval seconds over every epoch of its history
    (so a resumed run reports the whole run, not only the last call)."""
    return round(sum(h.get("time", {}).get("train_s", 0) + h.get("time", {}).get("eval_s", 0) for h in history), 2)


def write_failed(session: Session, error: str, failed_epoch: int) -> None:
    result = _result(session, status="failed", error=error)
    result["failed_epoch"] = failed_epoch
    store.write_json(session.out_dir / store.RESULT, result)


def finish_session(session: Session) -> dict:
    """Write and return the finished ``result.json``."""
    result = _result(session, status="finished", error=None)
    kept = session.cfg.train.keep_checkpoints
    result["checkpoints"] = best_checkpoints(session.best, result["selection"], kept)
    result["seconds"] = training_seconds(session.history)
    result["seconds_this_call"] = round(time.time() - session.t_start, 2)
    result["epochs"] = session.cfg.train.epochs
    # on copies; tuning trial runs (train.eval_test = false: never reported) skip the FLOP count
    measured = session.cfg.train.eval_test
    result["cost"] = measure_cost(session.run, session.history, session.run.ctx.device) if measured else None
    if session.initialised_from is not None:
        result["initialised_from"] = session.initialised_from
    if session.teachers_from is not None:
        result["teachers_from"] = session.teachers_from
    store.write_json(session.out_dir / store.RESULT, result)
    if not kept:  # train.keep_checkpoints = false: the record is written, drop the checkpoints
        for name in (store.CHECKPOINT, store.BEST):
            (session.out_dir / name).unlink(missing_ok=True)
    return result


@dataclass
class BuiltRun:
    """Everything one run trains with: the method, the model, the loaders and the context."""

    method: object
    model: MultimodalModel
    ctx: Context
    train_loader: EpochLoader
    val_loader: EpochLoader
    test_loader: EpochLoader
    split_sizes: dict


def build_run(cfg: RunConfig, spec, method_cls, data_root, device: torch.device, ckpt: dict | None = None) -> BuiltRun:
    """Seed, build data, identical backbones, the method's heads and optimisers (restored from
    ``ckpt`` when resuming, in the hook order of ``Method``), loaders and the ``Context``."""
    seed_everything(cfg.seed)
    spec = folded_spec(spec, cfg)  # data.cv_folds = K: fold (seed mod K) of train ∪ val validates
    # ---- data
    train_set = as_built(spec.build("train", data_root, True, cfg.data))
    val_set = as_built(spec.build("val", data_root, False, cfg.data)) if has_val_split(spec, data_root, cfg) else None
    test_set = as_built(spec.build("test", data_root, False, cfg.data))
    hyper = method_cls.make_hyper(cfg.method_params)

    # ---- model: encoders first (same initialisation for every method under one seed)
    factories = spec.backbones(cfg.data)
    initial_encoders = InitialEncoders(factories, torch.get_rng_state(), spec.modalities, device)
    encoders = nn.ModuleDict({m: factories[m][0]() for m in spec.modalities})
    feature_dims = {m: factories[m][1] for m in spec.modalities}
    method = method_cls(hyper, spec.modalities, spec.num_classes, feature_dims)
    if val_set is None and method.needs_val():
        raise ConfigError(
            f"{cfg.method} selects or adapts on the validation split, which this run does not have "
            "(data.val_fraction = 0, as protocol=official); add --set data.val_fraction=0.1"
        )

    heldout_set = None
    frac, count = method.heldout_fraction(), method.heldout_count()
    if frac > 0 or count > 0:
        kept, carved = (
            stratified_carve(train_set.labels, frac, cfg.data.split_seed)
            if frac > 0
            else counted_carve(len(train_set), count, cfg.seed)
        )
        heldout_set = _subset(train_set, carved)
        train_set = _subset(train_set, kept)

    method.inspect_encoders(encoders)
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
    val_loader = EpochLoader(val_set, tr.eval_batch_size, False, **loader_kw) if val_set is not None else None
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
        initial_encoders=initial_encoders,
    )

    return BuiltRun(
        method, model, ctx, train_loader, val_loader, test_loader,
        {**_split_sizes(train_set, val_set, test_set, heldout_set), **cv_record(spec)},
    )


def has_val_split(spec, data_root, cfg: RunConfig) -> bool:
    """Whether the run has a validation split: always, unless ``data.val_fraction = 0`` (the
    whole train set, as ``protocol = "official"``) leaves a dataset without a published val split
    with none."""
    if cfg.data.val_fraction > 0:
        return True
    return len(spec.splits(data_root, cfg.data).get("val", [])) > 0


def apply_channels_last(model: nn.Module) -> None:
    """channels_last for 2-D convolutions only (3-D convs such as I3D's keep their layout)."""
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            mod.to(memory_format=torch.channels_last)


def loader_workers(requested: int, dataset, device: torch.device) -> int:
    """``data.num_workers``; -1 (default) = 0 for in-memory datasets, and on CPU for datasets whose
    batches cost less to build than to pass between processes (``main_process_on_cpu``: the decoded
    cache, 20x decoding with 0 workers against 4.4x with 2 on a 2-core CPU, BENCHMARKS.md); else
    min(8, cores) on CUDA, min(2, cores) on CPU."""
    if requested >= 0:
        return requested
    dataset = as_built(dataset)
    if dataset.in_memory:
        return 0
    if device.type == "cpu" and dataset.main_process_on_cpu:
        return 0
    cores = os.cpu_count() or 1
    return min(8 if device.type == "cuda" else 2, cores)


def _subset(dataset, positions):
    return as_built(dataset).subset(positions)


def _split_sizes(train, val, test, heldout) -> dict:
    """Sizes of each split and the sha256 of its sorted item indices (``datasets.base.stratified_carve`` makes the carved ones)."""
    out = {}
    for name, ds in (("train", train), ("val", val), ("test", test), ("heldout", heldout)):
        if ds is None:
            continue
        out[name] = len(ds)
        if ds.dropped:
            out[f"{name}_dropped"] = ds.dropped
        idx = _item_indices(ds)
        if idx is not None:
            out[f"{name}_sha256"] = hashlib.sha256(json.dumps(sorted(idx)).encode()).hexdigest()
    return out


def _item_indices(ds) -> list[int] | None:
    indices = ds.indices
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
    over ``history`` so far (docs/records.md); written only when the latest
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


def best_checkpoints(best: dict | None, selection: dict, kept: bool = True) -> dict:
    """``result.json``'s ``checkpoints`` block: per rule, the epoch whose weights ``best.ckpt``
    holds; ``"file": null`` where they are missing or belong to another epoch than the one selected."""
    out = {}
    for rule in BEST_RULES:
        held = ((best or {}).get("rules") or {}).get(rule)
        wanted = selection.get(rule, {}).get("epoch")
        ok = kept and held is not None and held["epoch"] == wanted
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
    method.train_mode(model, ctx)
    sums: dict = {}
    n = skipped = 0
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
            ctx.step_in_epoch += 1
            ctx.global_step += 1
            if ctx.take_skipped():  # ctx.skip_step(): no optimiser step, not in the train means
                skipped += 1
                continue
            for k, v in out.items():
                v = v.detach().float() if isinstance(v, torch.Tensor) else float(v)
                sums[k] = sums[k] + v if k in sums else v
            n += 1
    if skipped:
        ctx.log_epoch("skipped_steps", skipped)
    logs = {}
    for k, v in sums.items():
        mean = v / max(n, 1)
        logs[k] = float(mean.item()) if isinstance(mean, torch.Tensor) else float(mean)
    return logs


def _result(session: Session, status: str, error: str | None) -> dict:
    """The ``result.json`` record (docs/records.md): identity, what each head means, whether it is
    a unimodal reference, the selection rules (finished runs) and the config summary."""
    cfg, method = session.cfg, session.run.method
    reference = method.reference_modality()
    components = run_components(cfg)
    return {
        "schema_version": store.SCHEMA_VERSION,
        "identity": {"hash": identity_hash(cfg, components), "components": components},
        "dataset": cfg.dataset,
        "method": cfg.method,
        "tag": cfg.tag,
        "seed": cfg.seed,
        "status": status,
        "error": error,
        "modalities": list(session.spec.modalities),
        "heads": method.head_meanings(),
        "unimodal_reference": reference is not None,
        "reference_modality": reference,
        "reproducible": reproducibility(session.run.ctx.device),
        "selection": select_all(session.history, cfg.select_tie) if status == "finished" else {},
        # the rule a table reports for this run; under protocol=official the papers' protocol
        "reported_rule": cfg.reported_rule,
        "precision": "fp32" if cfg.train.amp == "off" else f"amp:{cfg.train.amp}",
        "test_evaluated": cfg.train.eval_test,
        "config": {"train": asdict(cfg.train), "method": cfg.method_params, "protocol": cfg.protocol},
    }
