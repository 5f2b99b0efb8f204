"""The ``Method`` plugin interface.

A method owns its heads, its optimisers, its training step and its ``predict``; the harness
(``mmbench.benchmark.trainer``) owns the loop, devices, precision, evaluation, selection and
checkpoints. ``Method.HOOK_ORDER`` declares the order in which the harness calls the hooks (a
test records the real calls of fresh, resumed, held-out and ``init_from_unimodal`` runs against
it); ``Method`` also declares what a class may set: ``name``, ``Hyper``, ``version``,
``settings_toml``, ``paper``, ``conformance_overrides``.

The base class *is* the plain joint step (the concat baseline of GeWu-Lab/OGM-GE_CVPR2022
``main.py --fusion_method concat``): a concat linear head, one cross-entropy, one backward, one
optimiser step. A simple method overrides only what differs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmbench.methods.heads import ConcatHead
from mmbench.results.errors import ConfigError


@dataclass
class NoHyper:
    """Hyper-parameters of a method that has none."""


@dataclass
class Optimizers:
    """The optimisers and LR schedulers of a run, by name. The harness steps the schedulers
    (``train.step_at``), saves and restores both; methods step the optimisers."""

    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, object] = field(default_factory=dict)

    def __getitem__(self, name: str) -> torch.optim.Optimizer:
        return self.optimizers[name]

    @property
    def main(self) -> torch.optim.Optimizer:
        return next(iter(self.optimizers.values()))

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.optimizers.values():
            opt.step()

    def step_schedulers(self) -> None:
        for sched in self.schedulers.values():
            sched.step()

    def lrs(self) -> dict[str, float]:
        return {
            f"{name}/{i}": group["lr"]
            for name, opt in self.optimizers.items()
            for i, group in enumerate(opt.param_groups)
        }

    def state_dict(self) -> dict:
        return {
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers.items():
            if k in state.get("schedulers", {}):
                s.load_state_dict(state["schedulers"][k])


def build_optimizer(params, train_cfg, lr: float | None = None) -> torch.optim.Optimizer:
    """The shared optimiser of ``train.optimizer`` (SGD with momentum and weight decay, Adam or
    AdamW with ``train.betas``, or AdaGrad as PMR's ``--optimizer AdaGrad``), over a parameter
    iterable or a list of param-group dicts."""
    lr = train_cfg.lr if lr is None else lr
    name = train_cfg.optimizer.lower()
    wd = train_cfg.weight_decay
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=train_cfg.momentum, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(train_cfg.betas), weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=tuple(train_cfg.betas), weight_decay=wd)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=wd)
    raise ConfigError(f"unknown train.optimizer {train_cfg.optimizer!r}; choose sgd, adam, adamw or adagrad")


def build_scheduler(optimizer: torch.optim.Optimizer, train_cfg):
    """``train.schedule``: ``step`` = StepLR(step_size, gamma); ``constant`` = none."""
    name = train_cfg.schedule.lower()
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=train_cfg.step_size, gamma=train_cfg.gamma)
    if name == "constant":
        return None
    raise ConfigError(f"unknown train.schedule {train_cfg.schedule!r}; choose step or constant")


def check_choices(params: dict, choices: dict[str, tuple]) -> None:
    """Raise ``ConfigError`` unless every ``params[key]`` is one of ``choices[key]``."""
    for key, valid in choices.items():
        if params.get(key) not in valid:
            raise ConfigError(
                f"method.{key} must be one of {', '.join(map(str, valid))}, got {params.get(key)!r}"
            )


def to_device(batch: dict, device: torch.device) -> dict:
    """``batch`` with its tensors on ``device`` (non-blocking; unchanged on CPU): how the harness
    moves every batch, and how a method moves the batches it draws itself (G-Blend's held-out
    loader, PMR's prototype pass)."""
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def true_class_prob_sum(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sum_i softmax(logits_i)[y_i] over the batch (OGM-GE ``score_a``/``score_v``, PMR
    ``score_a_p``), batched; computed in the dtype of ``logits``."""
    return F.softmax(logits, dim=1).gather(1, y[:, None]).sum()


def modality_accuracies(logits: dict[str, torch.Tensor], y: torch.Tensor, modalities) -> dict[str, torch.Tensor]:
    """``{"acc_<m>": batch accuracy of logits[m]}`` for each of ``modalities`` (detached)."""
    return {f"acc_{m}": (logits[m].detach().argmax(1) == y).float().mean() for m in modalities}


def fresh_optimizer(params, train_cfg, lr: float | None = None, name: str = "main") -> Optimizers:
    """A fresh optimiser of ``train.optimizer`` (no momentum yet) at a constant ``lr`` (default
    ``train.lr``), without the shared scheduler: what a method puts in ``ctx.optimizers`` at a
    stage switch (ReconBoost's phases, DI-MML's second stage)."""
    return Optimizers({name: build_optimizer(params, train_cfg, lr=lr)})


def single_optimizer(params, train_cfg, name: str = "main") -> Optimizers:
    opt = build_optimizer(params, train_cfg)
    sched = build_scheduler(opt, train_cfg)
    return Optimizers({name: opt}, {name: sched} if sched is not None else {})


class Method:
    """Base class of every method; its default behaviour is naive joint training (concat head)."""

    # the registered name: ``^[a-z][a-z0-9_]*$`` (run folders are ``<name>-<tag>``)
    name: ClassVar[str] = ""
    # a dataclass whose every field has a default: the ``method.<key>`` settings
    Hyper: ClassVar[type] = NoHyper
    # part of every run's identity hash: bump when the numbers change (a renamed module, a
    # refactor with bit-identical results, a new option off by default are not a new version)
    version: ClassVar[str] = "1"
    # the per-dataset settings TOML, a path relative to the module that declares it
    # (``[datasets.<dataset>]``, ``[official.<dataset>.*]``, ``[sources.<dataset>]``); None: none
    settings_toml: ClassVar[str | None] = None
    # the paper, ``"Title", Venue Year``, for ``mmbench list methods`` (None: the first
    # ``"Title", Venue Year`` the module docstring cites)
    paper: ClassVar[str | None] = None
    # ``--set`` values the conformance kit (``mmbench.testing.check_method``) adds to its tiny
    # runs, e.g. a short stage so that a 2-epoch run reaches every branch
    conformance_overrides: ClassVar[dict] = {}
    # The order in which the harness calls the hooks of one run, as (hook, when) pairs:
    # "start" every start; "no_val" at start when the run has no validation split; "resume" at
    # a start from ``last.ckpt`` (before the heads are built, so heads that grow can be rebuilt
    # from the saved state; the optimisers' state is restored after ``configure_optimizers``);
    # "init" at a fresh start with ``method.init_from_unimodal``; "epoch" once per epoch, in
    # order ("batch": per training batch; "eval": per val and test batch); "end" once when the
    # run finishes ("cost": after the record, on copies, to measure one step and one prediction).
    HOOK_ORDER: ClassVar[tuple[tuple[str, str], ...]] = (
        ("__init__", "start"),
        ("needs_val", "no_val"),
        ("heldout_fraction", "start"),
        ("load_state_dict", "resume"),
        ("build_heads", "start"),
        ("configure_optimizers", "start"),
        ("init_from_unimodal", "init"),
        ("on_epoch_start", "epoch"),
        ("training_step", "batch"),
        ("before_evaluation", "epoch"),
        ("predict", "eval"),
        ("on_epoch_end", "epoch"),
        ("epoch_diagnostics", "epoch"),
        ("state_dict", "epoch"),
        ("reference_modality", "end"),
        ("head_meanings", "end"),
        ("training_step", "cost"),
        ("predict", "cost"),
    )
    # modalities the method runs; None = all of the dataset's. ``unimodal`` narrows it.
    uses_modalities: tuple[str, ...] | None = None
    # largest number of modalities the official code supports (OGM-GE, PMR: 2); None = any
    max_modalities: ClassVar[int | None] = None
    # hyper-parameters shown by value alone in run tags (``unimodal-fourier``)
    tag_keys: ClassVar[tuple[str, ...]] = ()
    # what the per-modality logits of ``predict`` mean (the table footnotes)
    modality_logits: ClassVar[str] = "split of the concat head, W_m phi^m + b/M"
    # what the "fusion" logits of ``predict`` mean
    fusion_logits: ClassVar[str] = "concat head, W [phi^1; ...; phi^M] + b"
    # (start, end) hyper-parameter pairs of epoch windows, range-checked by config_checks
    epoch_windows: ClassVar[tuple[tuple[str, str], ...]] = ()
    # frozen teachers from the unimodal reference runs, handed over by ``set_teachers`` on every
    # start and resume (mmbench.benchmark.unimodal_init); the run is refused without those runs
    needs_unimodal_teachers: ClassVar[bool] = False

    def __init__(self, hyper, modalities: tuple[str, ...], num_classes: int, feature_dims: dict[str, int]):
        self.hp = hyper
        self.modalities = tuple(modalities)
        self.num_classes = num_classes
        self.feature_dims = dict(feature_dims)

    # ------------------------------------------------------------------ configuration
    @classmethod
    def make_hyper(cls, params: dict):
        names = {f.name for f in dataclasses.fields(cls.Hyper)}
        unknown = set(params) - names
        if unknown:
            raise ConfigError(f"unknown {cls.name} hyper-parameters {sorted(unknown)}; valid: {sorted(names)}")
        return cls.Hyper(**params)

    @classmethod
    def validate_params(cls, params: dict, spec) -> None:
        """Raise ``ConfigError`` when the method cannot run on ``spec`` with ``params``."""
        if cls.max_modalities is not None and len(spec.modalities) > cls.max_modalities:
            raise ConfigError(
                f"{cls.name} supports at most {cls.max_modalities} modalities (its official code); "
                f"{spec.name} has {len(spec.modalities)}: {', '.join(spec.modalities)}"
            )

    @classmethod
    def validate_config(cls, cfg, spec) -> None:
        """Raise ``ConfigError`` when the method cannot run on the resolved ``cfg`` (called last by
        ``resolve_config``, so a sweep or ``mmbench run`` refuses before anything is written);
        e.g. ``greedy`` refuses encoders without stages (``mmbench.backbones.staged``)."""

    @classmethod
    def result_settings(cls, params: dict) -> tuple[str, ...]:
        """Settings of ``config.SPEED_KEYS`` that change this method's results under ``params``
        (they then enter the run identity and tag); default none."""
        return ()

    @property
    def active_modalities(self) -> tuple[str, ...]:
        return self.uses_modalities or self.modalities

    def needs_val(self) -> bool:
        """Whether the method reads ``ctx.val_metrics`` (MSLR's dynamic rule); the harness refuses
        such a run when it has no validation split."""
        return False

    def head_meanings(self) -> dict[str, str]:
        """What each head of ``predict`` means, for the run record's ``heads`` (readers never
        import a method): ``{"fusion": fusion_logits, <modality>: modality_logits}``."""
        return {"fusion": self.fusion_logits, **{m: self.modality_logits for m in self.active_modalities}}

    def reference_modality(self) -> str | None:
        """The modality a unimodal reference run stands for; None for a multimodal method."""
        return None

    def heldout_fraction(self) -> float:
        """Fraction of train the harness carves out as ``ctx.heldout_loader`` (G-Blend); 0 = none."""
        return 0.0

    def inspect_encoders(self, encoders: nn.ModuleDict) -> None:
        """Called by the harness with the dataset's encoders before ``build_heads`` (fresh runs and
        resumes alike): a method whose modules depend on the encoders' structure reads it here
        (``greedy``'s MMTM widths from ``StagedEncoder.stage_widths``). Default nothing."""

    def heldout_count(self) -> int:
        """Exact number of training items the harness holds out as ``ctx.heldout_loader``, drawn
        as ``torch.randperm(N)[:count]`` under the run seed and kept in that order (LFM's 16
        items); 0 = none. Used when ``heldout_fraction()`` is 0."""
        return 0

    # ------------------------------------------------------------------ heads
    def build_heads(self, feature_dims: dict[str, int], num_classes: int) -> nn.Module:
        """Default: one xavier-initialised ``Linear(sum d_m, K)`` over the concatenation."""
        return ConcatHead([feature_dims[m] for m in self.modalities], num_classes, self.modalities)

    def configure_optimizers(self, model: nn.Module, train_cfg) -> Optimizers:
        """Default: one optimiser of ``train.optimizer`` over the encoders used and the heads."""
        params = [p for m in self.active_modalities for p in model.encoders[m].parameters()]
        params += list(model.heads.parameters())
        return single_optimizer(params, train_cfg)

    # ------------------------------------------------------------------ steps
    def encode(self, model: nn.Module, batch: dict, modalities=None) -> dict[str, torch.Tensor]:
        """Features phi^m(x^m) of the given (default: active) modalities."""
        return {m: model.encoders[m](batch[m]) for m in (modalities or self.active_modalities)}

    def joint_backward(self, model: nn.Module, batch: dict, ctx) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Forward of the active encoders and the heads, L = CE(z, y) on the fused logits, zeroed
        gradients, backward; the optimisers are not stepped. Returns (logits, L)."""
        with ctx.autocast():
            feats = self.encode(model, batch)
            logits = model.heads(feats)
            loss = F.cross_entropy(logits["fusion"].float(), batch["label"])
        ctx.optimizers.zero_grad()
        loss.backward()
        return logits, loss

    def training_step(self, model: nn.Module, batch: dict, ctx) -> dict:
        """Joint step: L = CE(z, y) on the fused logits; backward; step (OGM-GE ``main.py``
        ``train_epoch`` with ``--fusion_method concat`` and no modulation)."""
        logits, loss = self.joint_backward(model, batch, ctx)
        ctx.optimizers.step()
        return {"loss": loss.detach(), **modality_accuracies(logits, batch["label"], self.active_modalities)}

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        """``{"fusion": z, m: z^m}``, logits for the fused head and each modality."""
        return model.heads(self.encode(model, batch))

    # ------------------------------------------------------------------ hooks and state
    def init_from_unimodal(self, model: nn.Module, weights: dict[str, dict]) -> None:
        """Start from the unimodal reference runs' selected weights (``method.init_from_unimodal``;
        the harness finds and loads them, ``mmbench.benchmark.unimodal_init``): ``weights[m]`` =
        ``{"encoder": state_dict of phi^m, "head": state_dict of its linear head}``."""
        raise ConfigError(f"{self.name} does not support init_from_unimodal")

    @classmethod
    def uses_unimodal_init(cls, params: dict) -> bool:
        """Whether a fresh run with hyper-parameters ``params`` starts from the unimodal reference
        runs (``init_from_unimodal``); default: ``method.init_from_unimodal``."""
        return bool(params.get("init_from_unimodal", False))

    def starts_from_unimodal(self) -> bool:
        return type(self).uses_unimodal_init(dataclasses.asdict(self.hp))

    def set_teachers(self, teachers: dict[str, nn.Module]) -> None:
        """``needs_unimodal_teachers`` methods: ``teachers[m]`` is a copy of the dataset's encoder m
        holding the unimodal reference run's selected weights, in eval mode, ``requires_grad``
        False, on the run's device, outside ``model`` (never optimised nor checkpointed). Called
        on every start and resume, after the model is built or restored."""
        raise ConfigError(f"{self.name} does not take unimodal teachers")

    def set_teacher_heads(self, heads: dict[str, nn.Module]) -> None:
        """``needs_unimodal_teachers`` methods: ``heads[m]`` is the reference run's linear head
        (``Linear(d_m, K)``), frozen like the teachers; called right after ``set_teachers``.
        Default: ignored (a method distilling features only needs the encoders)."""

    def item_plan(self, ctx):
        """The items of the epoch about to train: ``None`` (default) = the plain training set, or a
        ``mmbench.methods.plan.ItemPlan`` of (train position, kept modalities), which the harness
        shuffles and batches with a ``keep`` mask (sample-level valuation); keep it in
        ``state_dict`` so that a resumed run trains the same items."""
        return None

    def train_mode(self, model: nn.Module, ctx) -> None:
        """Set the modules' modes before the epoch's training steps (default ``model.train()``);
        a stage with frozen encoders keeps them in eval mode (DI-MML's second stage)."""
        model.train()

    def on_epoch_start(self, ctx) -> None:
        pass

    def before_evaluation(self, ctx) -> None:
        """After the epoch's training, before val and test are evaluated (G-Blend's MultiBench
        head fine-tuning)."""

    def on_epoch_end(self, ctx) -> None:
        pass

    def epoch_diagnostics(self) -> dict:
        """Method-specific values for history.jsonl's ``diagnostics`` (e.g. classifier counts)."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class TwoModalityMethod(Method):
    """Base of the methods whose official code handles exactly two modalities ``(a, v)`` (dataset
    order) with the plain concat head and an inclusive modulation window of epochs (OGM-GE, PMR).

    Subclasses set ``choices`` (hyper-parameter -> valid values, checked by ``validate_params``)
    and give their ``Hyper`` the fields ``modulation_starts`` and ``modulation_ends``.
    """

    max_modalities = 2
    choices: ClassVar[dict[str, tuple]] = {}

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        if len(spec.modalities) != 2:
            raise ConfigError(f"{cls.name} needs exactly 2 modalities; {spec.name} has {len(spec.modalities)}")
        check_choices(params, cls.choices)

    def build_heads(self, feature_dims, num_classes):
        if len(self.modalities) != 2:
            raise ConfigError(
                f"{self.name} supports exactly 2 modalities; got {len(self.modalities)}: {', '.join(self.modalities)}"
            )
        return super().build_heads(feature_dims, num_classes)

    def in_window(self, epoch: int) -> bool:
        """Whether 0-indexed ``epoch`` lies in [modulation_starts, modulation_ends]."""
        return self.hp.modulation_starts <= epoch <= self.hp.modulation_ends
