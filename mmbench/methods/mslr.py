"""``mslr``: Modality-Specific Learning Rates for additive late fusion.

Yao and Mihalcea, "Modality-specific Learning Rates for Effective Multimodal Additive
Late-fusion", Findings of ACL 2022. There is no official code; the heads follow the
re-implementation in Lingy12/AGM_ICCV2023 (``AVClassifier_Sum``: output = sum of unimodal
classifiers). The model is additive late fusion, ``z = sum_m head_m(phi^m)``, trained with one
cross-entropy on ``z``; the optimiser has one parameter group per modality (encoder m + head m)
with ``lr_m = c_m * eta_m * s(epoch)``:

- ``keep``: ``eta_m`` is modality m's own base LR (``method.eta``), ``c_m = 1``;
- ``dynamic`` (default): after each epoch, ``c_m <- c_m * acc_m(e) / mean(acc_m(e-k+1..e))``
  with ``acc_m`` the *validation* accuracy of ``argmax z^m`` (never test);
- ``smooth``: the paper does not specify it well enough to implement; asking for it is an error.

``init_from_unimodal`` (paper) starts from the selected weights of the finished ``unimodal`` runs
of the same dataset, preset and seed (found and loaded by the harness, ``benchmark/unimodal_init``);
default false, so that MSLR starts from the same initialisation as every other method
(``protocol = "shared"``). Runs with it on must be reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.methods.base import Method, Optimizers, build_optimizer, build_scheduler, modality_accuracies
from mmbench.methods.heads import xavier_linear
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError


class UnspecifiedStrategyError(ConfigError, NotImplementedError):
    """MSLR's ``smooth`` strategy: the paper does not specify its rule."""


@dataclass
class MSLRHyper:
    strategy: str = "dynamic"  # dynamic | keep | smooth (not specified: refused); [guess] benchmark choice
    k: int = 5  # dynamic window, current epoch included; Lingy12/AGM_ICCV2023 run/CREMAD_main.py
    update_every: int = 1  # epochs between dynamic updates; [guess]
    eta: dict = field(default_factory=dict)  # base LR per modality; missing = the shared train.lr
    dynamic_variant: str = "cumulative_lr"  # cumulative_lr (paper) | agm_grad_scale (AGM repo)
    c_init: dict = field(default_factory=dict)  # agm_grad_scale: per-modality factor (missing = 1)
    window_start: int = 0  # agm_grad_scale: first epoch of the modulation window
    window_end: int = -1  # agm_grad_scale: first epoch after the window; -1 = to the end
    init_from_unimodal: bool = False  # [paper] true; false = from scratch like every other method
    unimodal_suffix: str = ""  # init_from_unimodal: reference runs unimodal-<m>_<suffix> (their tag)
    head_init: str = "xavier"  # as joint


# ----------------------------------------------------------------------------- the rules
def dynamic_ratio(history, k: int, include_current: bool = True) -> float | None:
    """The dynamic LR ratio from a modality's validation-accuracy history (oldest first).

    ``include_current=True`` (paper form): ``acc(e) / mean(acc(e-k+1..e))``, defined
    once ``k`` accuracies exist. ``include_current=False`` (AGM-repo form):
    ``acc(e) / mean(acc(e-k..e-1))``, defined once ``k`` earlier accuracies exist. Returns None
    while undefined or when the window's mean is 0.
    """
    need = k if include_current else k + 1
    if len(history) < need:
        return None
    window = history[-k:] if include_current else history[-k - 1 : -1]
    mean = sum(window) / k
    if mean <= 0:
        return None
    return history[-1] / mean


# ----------------------------------------------------------------------------- heads
class SumHeads(nn.Module):
    """One ``Linear(d_m, K)`` per modality; ``fusion = sum_m z^m`` (AGM repo ``AVClassifier_Sum``)."""

    def __init__(self, modalities, feature_dims, num_classes, init: str):
        super().__init__()
        self.modalities = tuple(modalities)
        self.fc = nn.ModuleDict(
            {m: xavier_linear(feature_dims[m], num_classes, init) for m in self.modalities}
        )

    def forward(self, feats):
        out = {m: self.fc[m](feats[m]) for m in self.modalities}
        out["fusion"] = torch.stack([out[m] for m in self.modalities]).sum(0)
        return out


# ----------------------------------------------------------------------------- the method
@register_method
class MSLR(Method):
    name = "mslr"
    settings_toml = "mslr.toml"
    Hyper = MSLRHyper
    modality_logits = "the additive late-fusion terms head_m(phi^m); fusion = their sum"
    fusion_logits = "sum of the late-fusion terms, sum_m head_m(phi^m)"
    epoch_windows = (("window_start", "window_end"),)

    def __init__(self, hyper, modalities, num_classes, feature_dims):
        super().__init__(hyper, modalities, num_classes, feature_dims)
        self._check(hyper, modalities)
        self.acc_history: dict[str, list[float]] = {m: [] for m in modalities}
        self.c = {m: float(hyper.c_init.get(m, 1.0)) if self._agm else 1.0 for m in modalities}
        self.grad_ratio = {m: 1.0 for m in modalities}  # agm_grad_scale only

    @property
    def _agm(self) -> bool:
        return self.hp.strategy == "dynamic" and self.hp.dynamic_variant == "agm_grad_scale"

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        cls._check(cls.make_hyper(params), spec.modalities)

    @staticmethod
    def _check(hp, modalities) -> None:
        if hp.strategy == "smooth":
            raise UnspecifiedStrategyError(
                "mslr strategy 'smooth' is not specified (the paper gives no rule precise enough to "
                "implement); use method.strategy=dynamic or keep"
            )
        if hp.strategy not in ("dynamic", "keep"):
            raise ConfigError(f"mslr strategy must be dynamic or keep, got {hp.strategy!r}")
        if hp.dynamic_variant not in ("cumulative_lr", "agm_grad_scale"):
            raise ConfigError(
                f"mslr dynamic_variant must be cumulative_lr or agm_grad_scale, got {hp.dynamic_variant!r}"
            )
        if hp.k < 1 or hp.update_every < 1:
            raise ConfigError("mslr k and update_every must be >= 1")
        for name in ("eta", "c_init"):
            unknown = set(getattr(hp, name)) - set(modalities)
            if unknown:
                raise ConfigError(
                    f"mslr {name} names unknown modalities {sorted(unknown)}; valid: {', '.join(modalities)}"
                )
        if any(float(v) <= 0 for v in hp.eta.values()):
            raise ConfigError("mslr eta values must be positive learning rates")

    # ------------------------------------------------------------------ heads and optimiser
    def build_heads(self, feature_dims, num_classes):
        return SumHeads(self.modalities, feature_dims, num_classes, self.hp.head_init)

    def base_lr(self, modality: str, train_cfg) -> float:
        """eta_m: ``method.eta[m]`` (``keep``: the best unimodal LR of m) or the shared LR."""
        return float(self.hp.eta.get(modality, train_cfg.lr))

    def configure_optimizers(self, model, train_cfg) -> Optimizers:
        """One optimiser of the shared type, one parameter group per modality (encoder m +
        head m) at ``lr = eta_m``; the shared schedule multiplies every group."""
        groups = [
            {
                "params": list(model.encoders[m].parameters()) + list(model.heads.fc[m].parameters()),
                "lr": self.base_lr(m, train_cfg),
                "modality": m,
            }
            for m in self.modalities
        ]
        opt = build_optimizer(groups, train_cfg)
        sched = build_scheduler(opt, train_cfg)
        return Optimizers({"main": opt}, {"main": sched} if sched is not None else {})

    # ------------------------------------------------------------------ unimodal initialisation
    def needs_val(self) -> bool:
        return self.hp.strategy == "dynamic"  # the dynamic rule reads validation accuracies

    def init_from_unimodal(self, model, weights):
        """``init_from_unimodal`` (paper: late fusion of fine-tuned unimodal models): encoder m
        and head m from the unimodal reference run of m (its selected epoch; the harness loads it
        before the first epoch of a fresh run)."""
        for m in self.modalities:
            model.encoders[m].load_state_dict(weights[m]["encoder"])
            model.heads.fc[m].load_state_dict(weights[m]["head"])

    # ------------------------------------------------------------------ step
    def training_step(self, model, batch, ctx):
        """L = CE(sum_m z^m, y); one backward; one step."""
        y = batch["label"]
        opts = ctx.optimizers
        with ctx.autocast():
            logits = model.heads(self.encode(model, batch))
            loss = F.cross_entropy(logits["fusion"].float(), y)
        opts.zero_grad()
        loss.backward()
        if self._agm and self._in_window(ctx.epoch):
            self._scale_grads(opts.main)
        opts.step()
        return {"loss": loss.detach(), **modality_accuracies(logits, y, self.modalities)}

    def _in_window(self, epoch: int) -> bool:
        end = self.hp.window_end
        return epoch >= self.hp.window_start and (end < 0 or epoch < end)

    def grad_scale(self, modality: str) -> float:
        """agm_grad_scale: grad_m <- c_init_m * ratio_m * grad_m (Lingy12/AGM_ICCV2023)."""
        return self.c[modality] * self.grad_ratio[modality]

    def _scale_grads(self, opt) -> None:
        for group in opt.param_groups:
            grads = [p.grad for p in group["params"] if p.grad is not None]
            if grads:
                torch._foreach_mul_(grads, self.grad_scale(group["modality"]))

    # ------------------------------------------------------------------ the LR rule
    def on_epoch_end(self, ctx):
        """Append each modality's val accuracy; apply the dynamic rule; log c_m and lr_m.

        The group LR is multiplied by the ratio, so it stays ``c_m * eta_m * s(epoch)``: the
        shared schedules (``constant``, chainable ``StepLR``) scale the current LR, which keeps
        c_m whether the scheduler steps at the start or the end of an epoch."""
        opt = ctx.optimizers.main
        for group in opt.param_groups:
            m = group["modality"]
            hist = self.acc_history[m]
            hist.append(float(ctx.val_metrics[m]["acc"]))
            if self.hp.strategy != "dynamic":
                pass
            elif self._agm:
                # ratio for the next epoch: current over the mean of the k stored before it
                ratio = dynamic_ratio(hist, self.hp.k, include_current=False)
                self.grad_ratio[m] = 1.0 if ratio is None else ratio
                ctx.log_epoch(f"mslr_grad_scale/{m}", self.grad_scale(m))
            elif (ctx.epoch + 1) % self.hp.update_every == 0:
                ratio = dynamic_ratio(hist, self.hp.k, include_current=True)
                if ratio is not None:
                    self.c[m] *= ratio
                    group["lr"] *= ratio  # = c_m * eta_m * s(epoch): the schedule factor is kept
                ctx.log_epoch(f"mslr_ratio/{m}", 1.0 if ratio is None else ratio)
            ctx.log_epoch(f"mslr_c/{m}", self.c[m])
            ctx.log_epoch(f"mslr_lr/{m}", group["lr"])

    # ------------------------------------------------------------------ predict and state
    @torch.no_grad()
    def predict(self, model, batch):
        """``{"fusion": sum_m z^m, m: z^m}``."""
        return model.heads(self.encode(model, batch))

    def state_dict(self):
        return {
            "acc_history": self.acc_history,
            "c": self.c,
            "grad_ratio": self.grad_ratio,
        }

    def load_state_dict(self, state):
        self.acc_history = {m: list(v) for m, v in state["acc_history"].items()}
        self.c = dict(state["c"])
        self.grad_ratio = dict(state["grad_ratio"])
