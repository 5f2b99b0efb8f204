"""``inforeg``: Information Acquisition Regulation (specs/methods/inforeg.md).

Huang, Wei, Yang, Hu, "Adaptive Unimodal Regulation for Balanced Multimodal Information
Acquisition", CVPR 2025 (arXiv 2503.18595). Official code GeWu-Lab/InfoReg_CVPR2025, commit
939b2ed11dcbf4daddb2507157b2cb9f8d0e24d7 (``main.py``, ``models/basic_model.py``); the March 2025
release (commit 41d887f461ab7f70ddc0440b22e999a24b99e610) differs by the flags below.

During the "prime learning window" the leading modality is slowed by a proximal pull toward its
encoder's weights at the start of the epoch:

1. Window (``main.py:237-243``, ``693-694``): with the first modality's per-epoch Fisher traces
   t_0 .. t_{e-1} prefixed by ``window_span`` zeros, k_0 = 1 and k_e = (T1 - T2) / T1, T1 the mean
   of the last ``window_span`` entries, T2 the mean of the ``window_span`` entries before the last
   one (``window_k``).
2. Step (``main.py:359-543``): L = CE(z) + CE(z^a) + CE(z^v) with the split logits z^m = W_m phi^m
   + b/2 (``main.py:361-363``), backward; s^m = sum_i softmax(z^m_i)[y_i]; if k_e > thr the leading
   modality gets beta = c_m exp(tanh(s_lead - s_other)) (``main.py:465-485``, ``regulation_betas``);
   every encoder parameter's gradient gets + beta (theta - theta_anchor) (``main.py:489-495``,
   the gradient of (beta / 2) ||theta - theta_anchor||^2); the squared gradients of the conv /
   linear weights are accumulated (``main.py:501-523``, after the pull); optimiser step.
3. Epoch end (``main.py:569-577``, ``594-595``): t^m_e = sum over layers of mean(acc^m_l), appended
   to the modality's trace history (``fisher_trace``).

Flags (spec §5): ``unimodal_logits = "aux_heads"`` (the March release's two extra linear heads),
``regulate_second = False`` (the March release, whose second branch never fired),
``window_threshold`` 0.04 (March), ``window_latch`` (keep regulation off once the window closed;
[guess]). The official step's three extra logging backward passes are not reproduced (they do not
change training). Two modalities only: ``a`` is the dataset's first modality, ``v`` the second.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmbench.methods.base import Method, check_choices, modality_accuracies, true_class_prob_sum
from mmbench.methods.heads import ConcatHead, xavier_linear
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError

_CHOICES = {"unimodal_logits": ("split", "aux_heads")}


@dataclass
class InfoRegHyper:
    window_threshold: float = 0.05  # [code] main.py:465,473 (March release: 0.04); strict k > thr
    c_first: float = 0.95  # [code] main.py:468, the first (audio) modality's constant
    c_second: float = 0.1  # [code] main.py:476, the second (visual) modality's constant
    window_modality: str = "first"  # [code] main.py:240-241 the audio (first) trace; or a modality name
    window_span: int = 10  # [code] main.py:237-243 ten-epoch means, ten leading zeros
    unimodal_logits: str = "split"  # [code] HEAD: "split" | "aux_heads" (March release)
    regulate_second: bool = True  # [code] HEAD; False = March release (second branch never fires)
    window_latch: bool = False  # [code] k recomputed every epoch; True keeps it off once k <= thr [guess]


# --------------------------------------------------------------------------- the algorithm
def window_k(traces: list[float], epoch: int, span: int = 10) -> float:
    """k_e of ``main.py:237-243``: 1 at epoch 0, else (T1 - T2) / T1 over the trace history
    prefixed by ``span`` zeros (T1 = mean of the last ``span`` entries, T2 = mean of the ``span``
    entries before the last). ``traces`` holds t_0 .. t_{e-1} (at least ``epoch`` entries)."""
    if epoch == 0:
        return 1.0
    hist = [0.0] * span + [float(t) for t in traces[:epoch]]
    t1 = sum(hist[-span:]) / span
    t2 = sum(hist[-span - 1 : -1]) / span
    return (t1 - t2) / t1 if t1 != 0 else 0.0


def regulation_betas(
    s_a: torch.Tensor,
    s_v: torch.Tensor,
    k: float,
    thr: float,
    c_a: float,
    c_v: float,
    regulate_second: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(beta_a, beta_v) of ``main.py:465-485`` from the summed true-class probabilities: inside the
    window (k > thr, strict) the leading modality (strict s comparison) gets c exp(tanh(lead
    margin)), the other 0. ``regulate_second=False`` is the March release, whose second branch
    repeated the first condition, so ``v`` is never regulated. Tensors throughout (no sync)."""
    zero = torch.zeros_like(s_a)
    if not k > thr:
        return zero, zero
    beta_a = torch.where(s_a > s_v, c_a * torch.exp(torch.tanh(s_a - s_v)), zero)
    if not regulate_second:
        return beta_a, zero
    beta_v = torch.where(s_v > s_a, c_v * torch.exp(torch.tanh(s_v - s_a)), zero)
    return beta_a, beta_v


@torch.no_grad()
def add_proximal_gradient(params, anchors, beta: torch.Tensor) -> None:
    """grad <- grad + beta (theta - theta_anchor) for every parameter (``main.py:489-495``)."""
    for p, p0 in zip(params, anchors):
        if p.grad is not None:
            p.grad.add_((p - p0) * beta.to(p.dtype))


def fisher_weights(encoder: nn.Module) -> list[nn.Parameter]:
    """The conv / linear weight tensors of ``encoder`` (``main.py:501-523``: no biases, no BN)."""
    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    return [mod.weight for mod in encoder.modules() if isinstance(mod, kinds) and mod.weight is not None]


@torch.no_grad()
def fisher_increment(weights) -> torch.Tensor:
    """sum_l ||grad_l||^2 / numel_l of this step: the per-step part of the trace, since the trace
    sum_l mean(sum_steps grad_l^2) equals sum_steps sum_l ||grad_l||^2 / numel_l."""
    total = None
    for p in weights:
        if p.grad is None:
            continue
        term = p.grad.float().pow(2).sum() / p.numel()
        total = term if total is None else total + term
    return total if total is not None else torch.zeros(())


class AuxHeadsConcat(ConcatHead):
    """The March release's heads: the concat head for the fused logits plus one ``Linear(d_m, K)``
    per modality (xavier-normal, zero bias) whose logits are z^m."""

    def __init__(self, dims, num_classes, modalities):
        super().__init__(dims, num_classes, modalities)
        self.aux = nn.ModuleDict({m: xavier_linear(d, num_classes) for m, d in zip(modalities, self.dims)})

    def forward(self, feats):
        out = {"fusion": self.fc(torch.cat([feats[m] for m in self.modalities], dim=1))}
        out.update({m: self.aux[m](feats[m]) for m in self.modalities})
        return out


# --------------------------------------------------------------------------- the method
@register_method
class InfoReg(Method):
    name = "inforeg"
    settings_toml = "inforeg.toml"
    Hyper = InfoRegHyper
    max_modalities = 2

    def __init__(self, hyper, modalities, num_classes, feature_dims):
        super().__init__(hyper, modalities, num_classes, feature_dims)
        self.traces: dict[str, list[float]] = {m: [] for m in self.modalities}
        self.latched_off = False
        self.k = 1.0
        self._anchor: dict[str, list[torch.Tensor]] = {}
        self._acc: dict[str, torch.Tensor] = {}

    modality_logits = "split of the concat head, W_m phi^m + b/2"

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        if len(spec.modalities) != 2:
            raise ConfigError(
                f"inforeg supports exactly 2 modalities; {spec.name} has {len(spec.modalities)}: "
                f"{', '.join(spec.modalities)}"
            )
        check_choices(params, _CHOICES)
        wm = params.get("window_modality", "first")
        if wm not in ("first", "second", *spec.modalities):
            raise ConfigError(
                f"method.window_modality must be first, second or one of {', '.join(spec.modalities)}, got {wm!r}"
            )
        if int(params.get("window_span", 10)) < 1:
            raise ConfigError("method.window_span must be at least 1")

    def build_heads(self, feature_dims, num_classes):
        if len(self.modalities) != 2:
            raise ValueError(
                f"inforeg supports exactly 2 modalities; got {len(self.modalities)}: {', '.join(self.modalities)}"
            )
        dims = [feature_dims[m] for m in self.modalities]
        if self.hp.unimodal_logits == "aux_heads":
            return AuxHeadsConcat(dims, num_classes, self.modalities)
        return ConcatHead(dims, num_classes, self.modalities)

    def head_meanings(self):
        text = self.modality_logits
        if self.hp.unimodal_logits == "aux_heads":
            text = "auxiliary Linear(d_m, K) head trained by its own CE (March release)"
        return {"fusion": self.fusion_logits, **{m: text for m in self.modalities}}

    @property
    def window_modality(self) -> str:
        wm = self.hp.window_modality
        return {"first": self.modalities[0], "second": self.modalities[1]}.get(wm, wm)

    # ------------------------------------------------------------------ hooks
    def on_epoch_start(self, ctx):
        """Anchor = the encoders' weights now (the end of the previous epoch); k_e from the window
        modality's traces (``main.py:693-694``)."""
        model = ctx.model
        self._anchor = {
            m: [p.detach().clone() for p in model.encoders[m].parameters()] for m in self.modalities
        }
        self._acc = {m: torch.zeros((), device=ctx.device) for m in self.modalities}
        k = window_k(self.traces[self.window_modality], ctx.epoch, self.hp.window_span)
        if self.hp.window_latch and (self.latched_off or not k > self.hp.window_threshold):
            self.latched_off = True
        self.k = k
        ctx.log_epoch("window_k", k)
        ctx.log_epoch("regulating", float(self.regulating))

    @property
    def regulating(self) -> bool:
        return self.k > self.hp.window_threshold and not self.latched_off

    def training_step(self, model, batch, ctx):
        a, v = self.modalities
        y = batch["label"]
        with ctx.autocast():
            logits = model.heads(self.encode(model, batch))
            loss_f = F.cross_entropy(logits["fusion"].float(), y)
            loss_a = F.cross_entropy(logits[a].float(), y)
            loss_v = F.cross_entropy(logits[v].float(), y)
            loss = loss_f + loss_a + loss_v
        ctx.optimizers.zero_grad()
        loss.backward()
        with torch.no_grad():
            s_a = true_class_prob_sum(logits[a].detach().float(), y)
            s_v = true_class_prob_sum(logits[v].detach().float(), y)
            k = self.k if not self.latched_off else float("-inf")
            beta_a, beta_v = regulation_betas(
                s_a,
                s_v,
                k,
                self.hp.window_threshold,
                self.hp.c_first,
                self.hp.c_second,
                self.hp.regulate_second,
            )
        if self.regulating and self._anchor:  # the anchor is taken in on_epoch_start
            for m, beta in ((a, beta_a), (v, beta_v)):
                add_proximal_gradient(model.encoders[m].parameters(), self._anchor[m], beta)
        for m in self.modalities:
            self._acc.setdefault(m, torch.zeros((), device=y.device))
            self._acc[m] = self._acc[m] + fisher_increment(fisher_weights(model.encoders[m])).to(
                self._acc[m].device
            )
        ctx.optimizers.step()
        ctx.log(f"beta_{a}", beta_a)
        ctx.log(f"beta_{v}", beta_v)
        ctx.log(f"score_{a}", s_a / y.numel())
        ctx.log(f"score_{v}", s_v / y.numel())
        return {
            "loss": loss.detach(),
            "loss_fusion": loss_f.detach(),
            f"loss_{a}": loss_a.detach(),
            f"loss_{v}": loss_v.detach(),
            **modality_accuracies(logits, y, self.modalities),
        }

    def on_epoch_end(self, ctx):
        """t^m_e appended to each modality's trace history (``main.py:569-577``, ``594-595``)."""
        for m in self.modalities:
            t = float(self._acc[m])
            self.traces[m].append(t)
            ctx.log_epoch(f"trace_{m}", t)

    def state_dict(self):
        return {"traces": {m: list(t) for m, t in self.traces.items()}, "latched_off": self.latched_off}

    def load_state_dict(self, state):
        self.traces = {m: list(t) for m, t in state["traces"].items()}
        self.latched_off = bool(state["latched_off"])
