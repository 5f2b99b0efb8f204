"""``amco``: Adaptive Mask Co-optimisation.

Zhou, Liang, Zheng, Xuan, Kumada, "Adaptive Mask Co-Optimization for Modal Dependence in
Multimodal Learning", ICASSP 2023 (doi 10.1109/ICASSP49357.2023.10096641). There is no public
official code: every mechanism follows the only implementation, BalanceBenchmark's port
(GeWu-Lab/BalanceBenchmark @ 4c1482f, ``balancemm/trainer/AMCo_trainer.py:61-159``
``train_epoch``; ``balancemm/models/avclassify_model.py:326-384`` ``BaseClassifierAMCoModel``),
with its shape crash fixed.

Per epoch e the schedule position l_t restarts at 0 and grows by e * lt_rate after every batch
(``AMCo_trainer.py:64, 83``). Per batch:

    p_t = sin(pi/2 * min(eps, l_t) / eps);   N = floor(p_t U)
    mask = random order of (U - N ones, N zeros)            (one mask per batch, U = K)
    u^m = mask * z^m if modality m is dependent else z^m    (z^m: split logits of the concat head)
    L = CE(linear_star(sum_m u^m), y) + sum_m CE(u^m, y)     inside the modulation window
    L = CE(linear_star(sum_m z^m), y)                        outside it

After the step (inside the window) the flags for the next batch come from one softmax over the
concatenated [u^1 | ... | u^M]: mass_m = its summed probability on m's K columns / B, and m is
dependent when mass_m > sigma (``AMCo_trainer.py:146-155``); flags restart every epoch. The mask
order is drawn from the method's own random stream at the global step, so a resumed run draws the
same masks; nothing else crosses an epoch boundary.

Flags: ``mask_shape_fix`` (always on: the port expands the mask to (2, K) and fails for batches
other than 1 or 2; the (K,) mask broadcasts over the batch); ``mask_target`` ``logits`` (current
port) | ``features`` (the earlier port, 596b434: the dependent modality's features are masked over
its own width d_m and rescaled by 1/(1 - p_t), by 10 when |p_t - 1| <= 0.1, with no linear_star);
``dependent_rule`` ``per_batch`` (current port) | ``sticky`` (earlier port: the first modality in
order with mass >= sigma is flagged and stays flagged until the epoch ends).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.methods.base import Method, check_choices
from mmbench.methods.heads import ConcatHead
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError

_CHOICES = {"mask_target": ("logits", "features"), "dependent_rule": ("per_batch", "sticky")}


@dataclass
class AMCoHyper:
    sigma: float = 0.5  # [guess] BalanceBenchmark trainer_config.yaml
    eps: float = 0.3  # [guess] BalanceBenchmark
    lt_rate: float = 0.1  # [guess] BalanceBenchmark: l_t += epoch / 10 per batch
    mask_units: int = 0  # [guess] U; 0 = the number of classes K (BalanceBenchmark n_classes)
    modulation_starts: int = 0  # [guess] BalanceBenchmark, inclusive
    modulation_ends: int = 80  # [guess] BalanceBenchmark, inclusive
    mask_target: str = "logits"  # [guess] current port; "features": the earlier port
    dependent_rule: str = "per_batch"  # [guess] current port; "sticky": the earlier port


# ----------------------------------------------------------------------------- the rule
def mask_ratio(l_t: float, eps: float) -> float:
    """p_t = sin(pi/2 * min(eps, l_t) / eps)."""
    return math.sin(math.pi / 2 * min(eps, l_t) / eps)


def draw_mask(units: int, p_t: float, generator: torch.Generator) -> torch.Tensor:
    """cat(ones(U - N), zeros(N)) in the order ``randperm(U, generator)``, N = floor(p_t U)."""
    n = int(p_t * units)
    base = torch.cat([torch.ones(units - n), torch.zeros(n)])
    return base[torch.randperm(units, generator=generator)]


def dependence_masses(logits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mass_m: one softmax over the concatenated [u^1 | ... | u^M], summed over the batch and the
    columns of modality m, divided by the batch size."""
    names = list(logits)
    probs = F.softmax(torch.cat([logits[m].detach().float() for m in names], dim=1), dim=1)
    blocks = torch.split(probs, [logits[m].shape[1] for m in names], dim=1)
    return {m: b.sum() / probs.shape[0] for m, b in zip(names, blocks)}


# ----------------------------------------------------------------------------- heads
class AMCoHeads(nn.Module):
    """The concat head (split logits z^m = W_m phi^m + b/M) and ``linear_star`` = ``Linear(K, K)``
    on the summed split logits (``BaseClassifierAMCoModel``)."""

    def __init__(self, dims: dict[str, int], num_classes: int, modalities, mask_target: str):
        super().__init__()
        self.modalities = tuple(modalities)
        self.concat = ConcatHead([dims[m] for m in self.modalities], num_classes, self.modalities)
        self.linear_star = nn.Linear(num_classes, num_classes) if mask_target == "logits" else None

    def fuse(self, split: dict[str, torch.Tensor]) -> torch.Tensor:
        total = sum(split[m] for m in self.modalities)
        return self.linear_star(total) if self.linear_star is not None else total

    def forward(self, feats):
        split = self.concat.split_logits(feats)
        return {"fusion": self.fuse(split), **split}


# ----------------------------------------------------------------------------- the method
@register_method
class AMCo(Method):
    name = "amco"
    settings_toml = "amco.toml"
    paper = '"Adaptive Mask Co-Optimization for Modal Dependence in Multimodal Learning", ICASSP 2023'
    Hyper = AMCoHyper
    modality_logits = "split of the concat head, W_m phi^m + b/M (unmasked at evaluation)"
    fusion_logits = "linear_star (K x K) on the summed split logits"
    epoch_windows = (("modulation_starts", "modulation_ends"),)

    def __init__(self, *args):
        super().__init__(*args)
        self.l_t = 0.0
        self.dependent = {m: False for m in self.modalities}
        if self.hp.mask_target == "features":
            self.fusion_logits = "concat head on the features (no linear_star; earlier port)"

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        check_choices(params, _CHOICES)
        if not params.get("eps", 0) > 0:
            raise ConfigError(
                f"method.eps must be > 0 (the schedule divides by it), got {params.get('eps')!r}"
            )
        if params.get("mask_units", 0) < 0:
            raise ConfigError("method.mask_units must be >= 0 (0 = the number of classes)")

    def build_heads(self, feature_dims, num_classes):
        return AMCoHeads(feature_dims, num_classes, self.modalities, self.hp.mask_target)

    def on_epoch_start(self, ctx):
        """``AMCo_trainer.py:64``: l_t = 0 and no modality dependent at every epoch start."""
        self.l_t = 0.0
        self.dependent = {m: False for m in self.modalities}

    def _masked(self, model, feats, ctx, p_t: float) -> dict[str, torch.Tensor]:
        """The split logits u^m with the batch's mask on the dependent modalities."""
        heads, gen = model.heads, ctx.generator("amco/mask", device="cpu")
        if self.hp.mask_target == "features":
            scale = 10.0 if abs(p_t - 1) <= 0.1 else 1.0 / (1.0 - p_t)
            feats = dict(feats)
            for m in self.modalities:
                if self.dependent[m]:
                    mask = draw_mask(feats[m].shape[1], p_t, gen).to(feats[m].device, feats[m].dtype)
                    feats[m] = feats[m] * mask * scale
            return heads.concat.split_logits(feats)
        split = heads.concat.split_logits(feats)
        units = self.hp.mask_units or self.num_classes
        if units != self.num_classes:
            raise ConfigError(
                f"amco masks K = {self.num_classes} logits; method.mask_units={units} must be 0 or K"
            )
        mask = draw_mask(units, p_t, gen)
        return {
            m: split[m] * mask.to(split[m].device, split[m].dtype) if self.dependent[m] else split[m]
            for m in split
        }

    def training_step(self, model, batch, ctx):
        """One masked forward, fused + unimodal CE inside the window, step, then next flags."""
        y, hp = batch["label"], self.hp
        windowed = hp.modulation_starts <= ctx.epoch <= hp.modulation_ends
        p_t = mask_ratio(self.l_t, hp.eps)
        with ctx.autocast():
            feats = self.encode(model, batch)
            u = self._masked(model, feats, ctx, p_t) if windowed else model.heads.concat.split_logits(feats)
            fused = model.heads.fuse(u)
        loss = F.cross_entropy(fused.float(), y)
        loss_u = {m: F.cross_entropy(u[m].float(), y) for m in self.modalities}
        if windowed:
            loss = loss + sum(loss_u.values())
        ctx.optimizers.zero_grad()
        loss.backward()
        ctx.optimizers.step()
        out = {"loss": loss.detach()}
        if windowed:
            self._update_flags(dependence_masses(u), ctx)
        ctx.log("p_t", p_t)
        self.l_t += ctx.epoch / (1.0 / hp.lt_rate)  # the port's l_t += epoch / 10
        for m in self.modalities:
            out[f"loss_{m}"] = loss_u[m].detach()
            out[f"acc_{m}"] = (u[m].detach().argmax(1) == y).float().mean()
        return out

    def _update_flags(self, masses: dict[str, torch.Tensor], ctx) -> None:
        """``per_batch``: dependent_m = mass_m > sigma; ``sticky``: the first modality with
        mass >= sigma joins the flagged ones for the rest of the epoch."""
        sigma = self.hp.sigma
        if self.hp.dependent_rule == "per_batch":
            self.dependent = {m: bool(masses[m] > sigma) for m in self.modalities}
        else:
            first = next((m for m in self.modalities if bool(masses[m] >= sigma)), None)
            if first is not None:
                self.dependent[first] = True
        for m in self.modalities:
            ctx.log(f"mass/{m}", masses[m])
            ctx.log(f"dependent/{m}", float(self.dependent[m]))
