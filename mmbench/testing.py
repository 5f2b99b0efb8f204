"""The conformance kit: ``check_method(MethodClass)`` checks the ``Method`` contract.

A plugin author calls it from their own tests (``assert check_method(MyMethod)``); the mmbench
test suite calls it for every built-in method. It trains the method briefly through the real
harness (``resolve_config`` + ``train_run``) on the embedded ``mfeat`` (two modalities) and
``mfeat3`` (three) datasets, into a temporary results root, and checks:

- **class**: a ``Method`` subclass with a ``name`` and a dataclass ``Hyper`` with defaults; the
  per-dataset settings of its TOML (``[datasets.<d>]``) are ``Hyper`` fields, each with a source in
  ``[sources.<d>]`` tagged ``[paper]``, ``[code]``, ``[guess]`` or ``[shared]``;
- **losses**: the training step logs at least one ``loss*`` value and every one is finite;
- **predict**: ``{"fusion": ..., <modality>: ...}`` for ``"fusion"`` and every modality the method
  uses (``active_modalities``), each a finite float ``(batch, num_classes)`` tensor;
- **encoders**: the checkpointed encoders have exactly the dataset's parameters and buffers
  (names and shapes), and encoders of modalities the method does not use are untouched;
- **state**: ``load_state_dict(state)`` then ``state_dict()`` gives ``state`` back; heads
  rebuilt after it load the checkpoint (strict) and reproduce the recorded val metrics;
- **determinism**: the same seed gives the same history (losses, metrics, diagnostics, LRs);
- **resume**: a run stopped after ``epochs // 2`` epochs and resumed ends with the same history,
  selection, weights and method state as an uninterrupted one.

A method whose official code supports fewer modalities (``max_modalities``) must refuse the
larger dataset with a ``ConfigError``; the kit records that instead of training it. A method that
cannot run on the embedded data (``greedy`` needs staged ResNet encoders) names the datasets the
kit trains it on in ``conformance_datasets`` (e.g. ``("cremad",)``); a dataset that is not
embedded is trained on a tiny fixture tree the kit writes (``mmbench.datasets.fixtures``). A
method with ``needs_unimodal_teachers`` gets ``unimodal`` reference runs of every modality,
trained under the kit's settings into each results root before its own runs. Kit
settings: ``DEFAULT_OVERRIDES`` (tiny data, two epochs), then the class attribute
``conformance_overrides`` (e.g. ``{"method.modality": "image"}`` for ``unimodal``, more epochs
for a method with stages), then the ``overrides`` argument.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mmbench.benchmark import registry
from mmbench.benchmark.config import method_preset, resolve_config
from mmbench.benchmark.seeding import seed_everything
from mmbench.benchmark.trainer import BuiltRun, Interrupted, build_run, evaluate, resolve_device, train_run
from mmbench.results import store
from mmbench.results.errors import ConfigError, MMBenchError, NonFiniteLossError
from mmbench.results.registry import BASELINE_METHOD

DATASETS = ("mfeat", "mfeat3")
DEFAULT_OVERRIDES = {"epochs": 2, "batch_size": 32, "data.limit_train_per_class": 10}
# a source starts with its tag: "[paper] Table 3", "[paper v2] Sec. 4", "[code] repo file", "[guess] why",
# "[shared] rule" (a shared-protocol rule stated in the TOML, e.g. a modulation window)
SOURCE_TAG = re.compile(r"\[(paper|code|guess|shared)\b[^\]]*\]")
ATOL = 1e-6


class ConformanceError(AssertionError):
    """A method breaks the contract; the message names the check, the dataset and what to fix."""


@dataclass
class ConformanceReport:
    """What ``check_method`` did: the checks passed and the datasets refused, per dataset."""

    method: str
    passed: dict[str, list[str]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.passed)

    def __str__(self) -> str:
        lines = [f"{self.method}: conformant"]
        lines += [f"  {d}: {', '.join(checks)}" for d, checks in self.passed.items()]
        lines += [f"  {d}: refused ({why})" for d, why in self.refused.items()]
        return "\n".join(lines)


def check_method(
    method_cls,
    datasets=None,
    overrides: dict | None = None,
    seed: int = 0,
    device: str = "cpu",
    results_root=None,
) -> ConformanceReport:
    """Run the conformance checks on ``method_cls``; raise ``ConformanceError`` on the first
    broken rule, return a ``ConformanceReport`` otherwise. ``results_root``: keep the runs there
    (default: a temporary directory, deleted afterwards)."""
    problems = registry.method_class_problems(method_cls)
    if problems:
        raise ConformanceError("class: " + "; ".join(problems))
    report = ConformanceReport(method_cls.name)
    datasets = datasets or getattr(method_cls, "conformance_datasets", None) or DATASETS
    kit = {**DEFAULT_OVERRIDES, **getattr(method_cls, "conformance_overrides", {}), **(overrides or {})}
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(registry.registered_method(method_cls))
        except MMBenchError as exc:
            raise ConformanceError(f"registry: {exc}") from exc
        root = stack.enter_context(_results_dir(results_root))
        _check_presets(method_cls)
        for dataset in datasets:
            data_root = _data_root(dataset, Path(root) / "_data")
            # a fixture tree is already tiny (and its datasets have no limit_train_per_class)
            kit_d = kit if data_root is None else {k: v for k, v in kit.items() if k != "data.limit_train_per_class"}
            refusal = _refusal(method_cls, dataset, kit_d, seed, device, data_root)
            if refusal is not None:
                report.refused[dataset] = refusal
                continue
            report.passed[dataset] = _check_on_dataset(
                method_cls, dataset, kit_d, seed, device, Path(root) / dataset, data_root
            )
    if not report.passed:
        raise ConformanceError(f"{method_cls.name} refused every dataset of the kit: {report.refused}")
    return report


@contextlib.contextmanager
def _results_dir(results_root):
    if results_root is not None:
        root = Path(results_root)
        if root.exists() and any(root.iterdir()):
            raise ConformanceError(f"results_root {root} is not empty: the kit needs fresh runs; pass an empty folder")
        yield root
        return
    with tempfile.TemporaryDirectory(prefix="mmbench-conformance-") as tmp:
        yield Path(tmp)


def _data_root(dataset: str, base: Path) -> Path | None:
    """None for an embedded dataset; else a tiny fixture tree of it, written under ``base``."""
    if registry.get_dataset(dataset).embedded:
        return None
    from mmbench.datasets.fixtures import write_fixture

    return write_fixture(dataset, base / dataset)


def _fail(dataset: str, check: str, message: str) -> ConformanceError:
    return ConformanceError(f"[{dataset}] {check}: {message}")


# ---------------------------------------------------------------------------- class and settings
def _check_presets(method_cls) -> None:
    """Every per-dataset setting is a ``Hyper`` field and cites its source."""
    preset = method_preset(method_cls.name)
    fields_ = {f.name for f in dataclasses.fields(method_cls.Hyper)}
    for dataset, values in preset.get("datasets", {}).items():
        sources = preset.get("sources", {}).get(dataset, {})
        for key in values:
            if key not in fields_:
                raise _fail(dataset, "settings", f"[datasets.{dataset}] {key} is not a {method_cls.name} hyper-parameter")
            source = sources.get(key, "")
            if not SOURCE_TAG.match(str(source)):
                raise _fail(
                    dataset,
                    "settings",
                    f"[datasets.{dataset}] {key} needs a source: [sources.{dataset}] {key} = "
                    f"\"[paper] Table N\" | \"[code] repo file\" | \"[guess] why\" (got {source!r})",
                )


def _refusal(method_cls, dataset: str, kit: dict, seed: int, device: str, data_root=None) -> str | None:
    """Why the method refuses ``dataset`` (allowed only beyond its ``max_modalities``), or None."""
    spec = registry.get_dataset(dataset)
    limit = getattr(method_cls, "max_modalities", None)
    if limit is None or len(spec.modalities) <= limit:
        return None
    try:
        _build(resolve_config(dataset, method_cls.name, kit, seed=seed, device=device), data_root=data_root)
    except ConfigError as exc:
        return str(exc)
    except Exception as exc:
        raise _fail(
            dataset, "refusal", f"{type(exc).__name__}: {exc}; refuse with mmbench.results.errors.ConfigError"
        ) from exc
    raise _fail(
        dataset,
        "refusal",
        f"max_modalities = {limit} but the method accepts {len(spec.modalities)} modalities; "
        "raise ConfigError in validate_params (the base class does) or lift max_modalities",
    )


# ---------------------------------------------------------------------------- one dataset
def _check_on_dataset(
    method_cls, dataset: str, kit: dict, seed: int, device: str, root: Path, data_root=None
) -> list[str]:
    def config():  # resolved afresh for every run, as each CLI call (a new process) does
        return resolve_config(dataset, method_cls.name, kit, seed=seed, device=device)

    def train(cfg, where: Path, stop_after_epochs=None):
        wants_references = getattr(method_cls, "needs_unimodal_teachers", False) or bool(
            cfg.method_params.get("init_from_unimodal", False)
        )
        if wants_references and not where.exists():
            _references(dataset, kit, seed, device, root / "_references", data_root)
            shutil.copytree(root / "_references", where)
        return _train(cfg, where, dataset, stop_after_epochs, data_root)

    cfg = config()
    epochs = cfg.train.epochs
    if epochs < 2:
        raise _fail(dataset, "setup", f"the kit needs epochs >= 2 to check resume (got {epochs})")

    result_a = train(config(), root / "a")
    dir_a = store.run_dir(root / "a", dataset, cfg.run_name, seed)
    history_a = store.read_history(dir_a / store.HISTORY)
    ckpt_a = torch.load(dir_a / store.CHECKPOINT, map_location="cpu", weights_only=False)
    if result_a["status"] != "finished" or len(history_a) != epochs:
        raise _fail(dataset, "training", f"status {result_a['status']}, {len(history_a)}/{epochs} epochs")

    _check_losses(history_a, dataset)
    active = _build(config(), data_root=data_root).method.active_modalities
    expected = ("fusion", *active)
    for split in ("val", "test"):
        missing = [h for h in expected if h not in history_a[-1][split]]
        if missing:
            raise _fail(dataset, "predict", f"no logits for {missing} (has {sorted(history_a[-1][split])})")

    _check_encoders(config(), active, ckpt_a, dataset)
    _check_state_and_predict(config(), ckpt_a, history_a[-1]["val"], expected, dataset, data_root)

    # resume: stop after epochs // 2, resume, compare with the uninterrupted run
    stop = epochs // 2
    try:
        train(config(), root / "c", stop_after_epochs=stop)
        raise _fail(dataset, "resume", f"train_run did not stop after {stop} epochs")
    except Interrupted:
        pass
    result_c = train(config(), root / "c")
    dir_c = store.run_dir(root / "c", dataset, cfg.run_name, seed)
    history_c = store.read_history(dir_c / store.HISTORY)
    ckpt_c = torch.load(dir_c / store.CHECKPOINT, map_location="cpu", weights_only=False)
    diff = _history_diff(history_a, history_c)
    if diff is None:
        end = (
            _diff(result_a["selection"], result_c["selection"], "selection")
            or _diff(ckpt_a["model"], ckpt_c["model"], "final weights")
            or _diff(ckpt_a["method"], ckpt_c["method"], "final method state")
        )
        diff = None if end is None else (epochs - 1, end[1])
    if diff is not None:
        epoch = diff[0]
        if epoch < stop:
            raise _fail(dataset, "determinism", f"two runs with seed {seed} differ at {diff[1]}")
        # the first `stop` epochs agree: an uninterrupted rerun tells determinism from resume
        train(config(), root / "b")
        dir_b = store.run_dir(root / "b", dataset, cfg.run_name, seed)
        again = _history_diff(history_a, store.read_history(dir_b / store.HISTORY))
        if again is not None:
            raise _fail(dataset, "determinism", f"two runs with seed {seed} differ at {again[1]}")
        raise _fail(
            dataset,
            "resume",
            f"a run resumed after {stop} epochs differs from an uninterrupted one at {diff[1]}; "
            "state_dict() must hold everything the method carries across epochs",
        )
    return ["losses", "predict", "encoders", "state", "determinism", "resume"]


def _references(dataset: str, kit: dict, seed: int, device: str, where: Path, data_root) -> None:
    """The ``unimodal`` reference run of every modality under the kit's shared settings (the
    ``method.*`` ones dropped), tagged by modality, into ``where`` (once)."""
    if where.exists():
        return
    shared = {k: v for k, v in kit.items() if not k.startswith("method.")}
    for m in registry.get_dataset(dataset).modalities:
        cfg = resolve_config(dataset, "unimodal", {**shared, "method.modality": m}, seed=seed, tag=m, device=device)
        _train(cfg, where, dataset, data_root=data_root)


def _train(cfg, root: Path, dataset: str, stop_after_epochs: int | None = None, data_root=None) -> dict:
    try:
        return train_run(
            cfg, root, root=data_root, progress=False, stop_after_epochs=stop_after_epochs, echo=lambda *a, **k: None
        )
    except NonFiniteLossError as exc:
        raise _fail(dataset, "losses", f"{exc}") from exc
    except Interrupted:
        raise
    except Exception as exc:  # report any crash as a kit failure with its cause
        raise _fail(dataset, "training", f"{type(exc).__name__}: {exc}") from exc


def _check_losses(history: list[dict], dataset: str) -> None:
    for rec in history:
        losses = {k: v for k, v in rec["train"].items() if k.startswith("loss")}
        if not losses:
            raise _fail(
                dataset, "losses", f"training_step returns no 'loss*' key (got {sorted(rec['train'])})"
            )
        bad = {k: v for k, v in losses.items() if v is None or not math.isfinite(v)}
        if bad:
            raise _fail(dataset, "losses", f"non-finite {bad} at epoch {rec['epoch']}")


def _build(cfg, ckpt: dict | None = None, data_root=None) -> BuiltRun:
    """The run ``train_run`` trains (``build_run``: same seeding, data, encoders, hook order),
    restored from ``ckpt`` when given."""
    spec = registry.get_dataset(cfg.dataset)
    return build_run(cfg, spec, registry.get_method(cfg.method), data_root, resolve_device(cfg.device), ckpt)


def _dataset_encoders(cfg) -> nn.ModuleDict:
    """The encoders as the dataset builds them, initialised as ``build_run`` does (seeded just
    before; the embedded datasets draw no random numbers while loading)."""
    spec = registry.get_dataset(cfg.dataset)
    seed_everything(cfg.seed)
    factories = spec.backbones(cfg.data)
    return nn.ModuleDict({m: factories[m][0]() for m in spec.modalities})


def _check_encoders(cfg, active, ckpt: dict, dataset: str) -> None:
    """The checkpointed encoders are the dataset's (same tensors by name and shape); encoders of
    modalities the method does not use end as they started."""
    initial = _dataset_encoders(cfg)
    fresh = initial.state_dict()
    saved = {k[len("encoders.") :]: v for k, v in ckpt["model"].items() if k.startswith("encoders.")}
    if set(saved) != set(fresh) or any(saved[k].shape != fresh[k].shape for k in fresh):
        extra, missing = sorted(set(saved) - set(fresh)), sorted(set(fresh) - set(saved))
        raise _fail(
            dataset,
            "encoders",
            f"model.encoders changed structure (extra {extra[:5]}, missing {missing[:5]}): methods keep "
            "their modules in model.heads and never change the dataset's encoders",
        )
    for m in (m for m in initial if m not in active):
        for k, v in initial[m].state_dict().items():
            if not torch.equal(saved[f"{m}.{k}"], v):
                raise _fail(
                    dataset, "encoders", f"encoder {m!r} is not used by the method but {k} changed in training"
                )


def _check_state_and_predict(cfg, ckpt: dict, recorded_val: dict, expected, dataset: str, data_root=None) -> None:
    """Method state round-trips; the run rebuilt from the checkpoint (method state loaded before
    ``build_heads``, strict weights) gives ``predict`` outputs of the right keys, shapes and
    values on every val batch and reproduces the recorded val metrics (the harness's own
    ``evaluate``, with each ``predict`` output checked)."""
    try:
        run = _build(cfg, ckpt, data_root)
    except RuntimeError as exc:
        raise _fail(
            dataset,
            "state",
            f"heads built after load_state_dict(method_state) do not load the checkpoint ({exc}); "
            "state_dict() must hold what build_heads needs",
        ) from exc
    diff = _diff(ckpt["method"], run.method.state_dict(), "state")
    if diff is not None:
        raise _fail(dataset, "state", f"load_state_dict(s) then state_dict() differs from s at {diff[1]}")
    method, num_classes = run.method, run.ctx.num_classes

    class CheckedPredict:
        def predict(self, model, batch):
            out = method.predict(model, batch)
            if not isinstance(out, dict):
                raise _fail(dataset, "predict", f"returns {type(out).__name__}, not a dict of logits")
            n = batch["label"].shape[0]
            for head in expected:
                z = out.get(head)
                if not isinstance(z, torch.Tensor) or tuple(z.shape) != (n, num_classes):
                    got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
                    raise _fail(dataset, "predict", f"{head!r} logits must be ({n}, {num_classes}), got {got}")
                if not z.is_floating_point() or not torch.isfinite(z).all():
                    raise _fail(dataset, "predict", f"{head!r} logits are not finite floats")
                if z.requires_grad:
                    raise _fail(dataset, "predict", f"{head!r} logits carry a graph: decorate predict with torch.no_grad()")
            return out

    again = evaluate(CheckedPredict(), run.model, run.val_loader, run.ctx.device, run.ctx.autocast)
    diff = _diff(recorded_val, again, "val")
    if diff is not None:
        raise _fail(
            dataset,
            "state",
            f"the model rebuilt from the checkpoint predicts differently from the recorded run ({diff[1]}); "
            "predict must depend only on the weights and the method state",
        )


# ---------------------------------------------------------------------------- comparisons
_VOLATILE = ("time",)  # wall-clock fields of history records


def _history_diff(a: list[dict], b: list[dict]):
    """``(epoch, path)`` of the first difference between two histories, or None."""
    if len(a) != len(b):
        return (min(len(a), len(b)), f"history length {len(a)} vs {len(b)}")
    for ra, rb in zip(a, b):
        ra = {k: v for k, v in ra.items() if k not in _VOLATILE}
        rb = {k: v for k, v in rb.items() if k not in _VOLATILE}
        d = _diff(ra, rb, f"epoch {ra.get('epoch')}")
        if d is not None:
            return (ra.get("epoch", 0), d[1])
    return None


def _diff(a, b, path: str):
    """``(0, "path: a vs b")`` of the first difference (numbers within ``ATOL``), or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return (0, f"{path}: keys {sorted(map(str, a))} vs {sorted(map(str, b))}")
        for k in a:
            d = _diff(a[k], b[k], f"{path}.{k}")
            if d is not None:
                return d
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return (0, f"{path}: length {len(a)} vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            d = _diff(x, y, f"{path}[{i}]")
            if d is not None:
                return d
        return None
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return (0, f"{path}: tensor {tuple(a.shape)} {a.dtype} vs {tuple(b.shape)} {b.dtype}")
        if a.is_floating_point():
            same = torch.allclose(a, b, rtol=0, atol=ATOL, equal_nan=True)
        else:
            same = torch.equal(a, b)
        return None if same else (0, f"{path}: tensors differ (max |a-b| {_maxdiff(a, b)})")
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if math.isnan(a) and math.isnan(b):
            return None
        return None if abs(a - b) <= ATOL else (0, f"{path}: {a!r} vs {b!r}")
    return None if a == b else (0, f"{path}: {a!r} vs {b!r}")


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


# ============================================================================ datasets
@dataclass
class DatasetReport:
    """What ``check_dataset`` checked: the dataset, its fixture root and the checks passed."""

    dataset: str
    root: Path | None
    passed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.passed)

    def __str__(self) -> str:
        return f"{self.dataset}: conformant ({', '.join(self.passed)})"


def check_dataset(
    spec,
    root=None,
    *,
    layout: str | None = None,
    preset: str = "smoke",
    overrides: dict | None = None,
    n_per_class: int = 2,
    seed: int = 0,
    batch_size: int = 4,
) -> DatasetReport:
    """Check the ``DatasetSpec`` contract on a tiny tree (the idea of torchvision's
    ``test/datasets_utils.py`` ``DatasetTestCase``); raise ``ConformanceError`` naming the
    broken rule, return a ``DatasetReport`` otherwise. ``spec``: a spec or a registered name.

    - **fixture**: the spec writes a tiny tree in its real on-disk format (``write_fixture``,
      into ``root`` or a temporary folder; an embedded dataset needs none);
    - **check**: ``check(root, cfg)`` finds no error in it;
    - **splits**: ``splits(root, cfg)`` gives non-empty train and test lists, disjoint where
      the spec numbers all splits in one index (``split_index = "shared"``);
    - **items**: every built split is a ``BuiltDataset`` whose items carry every modality, an
      int ``label`` in ``[0, num_classes)`` and an ``index``; ``labels`` agrees with the items;
    - **batches**: ``get_batch`` (or the in-memory ``batch``) equals ``default_collate`` of the
      items under the same torch seed, key by key, dtype and value;
    - **backbones**: each modality's encoder maps a batch to ``(batch, declared size)``.
    """
    from mmbench.datasets.base import BuiltDataset

    spec = registry.get_dataset(spec) if isinstance(spec, str) else spec
    report = DatasetReport(spec.name, None)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(registry.DATASETS.registered(spec))
        except MMBenchError as exc:
            raise ConformanceError(f"registry: {exc}") from exc
        data_root = _fixture_root(spec, root, layout, n_per_class, seed, stack, report)
        cfg = resolve_config(spec.name, BASELINE_METHOD, {"data.preset": preset, **(overrides or {})},
                             device="cpu").data
        errors = [str(p) for p in spec.check(data_root, cfg) if p.level == "error"]
        if errors:
            raise _fail(spec.name, "check", f"the fixture is not clean: {'; '.join(errors)}")
        report.passed.append("check")
        _check_splits(spec, data_root, cfg)
        report.passed.append("splits")
        built = {split: spec.build(split, data_root, split == "train", cfg) for split in ("train", "test")}
        for split, ds in built.items():
            if not isinstance(ds, BuiltDataset):
                raise _fail(spec.name, "items", f"build({split!r}) gave a {type(ds).__name__}, not a BuiltDataset")
            _check_items(spec, split, ds)
        report.passed.append("items")
        batch = _check_batches(spec, built["train"], batch_size)
        report.passed.append("batches")
        _check_backbones(spec, cfg, batch)
        report.passed.append("backbones")
    return report


def _fixture_root(spec, root, layout, n_per_class, seed, stack, report) -> Path | None:
    if spec.embedded:
        return None
    if "fixture" not in spec.capabilities():
        raise _fail(spec.name, "fixture", "the spec writes no fixture: implement write_fixture(root, layout, ...)")
    if root is None:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"mmbench-{spec.name}-"))) / spec.name
    report.root = Path(spec.write_fixture(Path(root), layout, n_per_class, seed))
    report.passed.append("fixture")
    return report.root


def _check_splits(spec, root, cfg) -> None:
    splits = {k: set(v) for k, v in spec.splits(root, cfg).items()}
    for name in ("train", "test"):
        if not splits.get(name):
            raise _fail(spec.name, "splits", f"splits() has no {name!r} items")
    names = sorted(splits) if spec.split_index == "shared" else []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = splits[a] & splits[b]
            if both:
                raise _fail(spec.name, "splits", f"{len(both)} items in both {a} and {b} (e.g. {sorted(both)[:3]})")


def _check_items(spec, split: str, ds) -> None:
    if len(ds) == 0 or len(ds.labels) != len(ds):
        raise _fail(spec.name, "items", f"{split}: {len(ds)} items, {len(ds.labels)} labels")
    for i in sorted({0, len(ds) - 1}):
        item = ds[i]
        missing = [m for m in (*spec.modalities, "label", "index") if m not in item]
        if missing:
            raise _fail(spec.name, "items", f"{split} item {i} lacks {missing}")
        label = int(item["label"])
        if not 0 <= label < spec.num_classes or label != int(ds.labels[i]):
            raise _fail(spec.name, "items", f"{split} item {i}: label {label}, labels[{i}] = {ds.labels[i]}, "
                                            f"{spec.num_classes} classes")


def _check_batches(spec, ds, batch_size: int) -> dict:
    from torch.utils.data import default_collate

    idx = list(range(min(batch_size, len(ds))))[::-1]
    torch.manual_seed(0)
    if ds.in_memory:
        batch = ds.batch(torch.as_tensor(idx))
    elif ds.builds_batches:
        batch = ds.get_batch(idx)
    else:
        batch = None
    torch.manual_seed(0)
    ref = default_collate([ds[i] for i in idx])
    if batch is None:
        return ref
    if batch.keys() != ref.keys():
        raise _fail(spec.name, "batches", f"batch keys {sorted(batch)} differ from the items' {sorted(ref)}")
    for key in ref:
        a, b = batch[key], ref[key]
        if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
            raise _fail(spec.name, "batches", f"{key!r}: the whole batch differs from default_collate of its items "
                                              f"({tuple(a.shape)} {a.dtype} vs {tuple(b.shape)} {b.dtype})")
    return batch


def _check_backbones(spec, cfg, batch: dict) -> None:
    factories = spec.backbones(cfg)
    if set(factories) != set(spec.modalities):
        raise _fail(spec.name, "backbones", f"backbones for {sorted(factories)}, modalities {list(spec.modalities)}")
    n = len(batch["label"])
    for m in spec.modalities:
        factory, dim = factories[m]
        torch.manual_seed(0)
        encoder = factory().eval()
        with torch.no_grad():
            out = encoder(batch[m])
        if tuple(out.shape) != (n, dim):
            raise _fail(spec.name, "backbones", f"{m}: encoder output {tuple(out.shape)}, declared ({n}, {dim})")
