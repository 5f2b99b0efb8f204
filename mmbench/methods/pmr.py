"""``pmr``: Prototypical Modal Rebalance.

Fan, Xu, Wang, Wang, Guo, "PMR: Prototypical Modal Rebalance for Multimodal Learning", CVPR
2023; official code fanyunfeng-bit/Modal-Imbalance-PMR (``main_Prototype_grad.py``, ``bash.sh``).
One prototype (class mean of the encoder features) per class and modality; each modality is
classified by negative Euclidean distance to its prototypes (Eq. 3-4), and the prototypical
cross-entropy (PCE, Eq. 5) of the *slower* modality is added to the fused CE with a fixed
weight ``alpha`` (the released code's binary rule). Gradients of the fused loss are untouched.

Two modalities only (the official code's): ``a`` is the first modality, ``v`` the second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mmbench.methods.base import TwoModalityMethod, to_device, true_class_prob_sum
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError

_CHOICES = {"coef_rule": ("binary",), "proto_timing": ("after_epoch", "epoch_start")}
# shuffling stream of the prototype passes, distinct from the training passes of the same epoch
_PROTO_EPOCH_OFFSET = 1_000_000


@dataclass
class PMRHyper:
    alpha: float = 2.0  # [code] bash.sh, CREMA-D concat: weight of the slower modality's PCE
    momentum_coef: float = 0.0  # [code] bash.sh main runs (argparse default 0.2): prototype EMA m
    proto_fraction: float = 0.1  # [code] prototypes from the first 10 % of a training pass
    modulation_starts: int = 0  # [code] 0-indexed, inclusive
    modulation_ends: int = 70  # [code] CREMA-D, 100-epoch runs; 0-indexed, inclusive
    coef_rule: str = (
        "binary"  # [code] fixed alpha on the slower modality; the paper's rho form is not implemented
    )
    # prototypical entropy regularisation (paper §3.3), absent from the released code: off by
    # default; when on, -per_weight * mean entropy of the dominant modality's prototype softmax in
    # the first per_epochs epochs. [guess] form, unverified against any code.
    per_weight: float = 0.0
    per_epochs: int = 0
    # "after_epoch": before epoch 0 and after every epoch (official); "epoch_start": recompute at
    # the start of every epoch (BalanceBenchmark)
    proto_timing: str = "after_epoch"


# --------------------------------------------------------------------------- the algorithm
def prototype_logits(feats: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """q_ik = -||phi_i - c_k||_2 (Euclidean, not squared; official ``EU_dist``), batched and
    computed exactly (no matrix-product shortcut)."""
    return -torch.cdist(feats.float(), protos.float(), compute_mode="donot_use_mm_for_euclid_dist")


def rebalance_coefficients(
    score_a: torch.Tensor, score_v: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(beta_a, beta_v, rho), rho = s^a_p / s^v_p: the PCE weight goes to the slower modality,
    (0, alpha) if rho > 1, (alpha, 0) if rho < 1, (0, 0) at a tie (official binary rule)."""
    rho = score_a / score_v
    zero = torch.zeros_like(rho)
    beta_a = torch.where(rho < 1, zero + alpha, zero)
    beta_v = torch.where(rho > 1, zero + alpha, zero)
    return beta_a, beta_v, rho


def mean_entropy(logits: torch.Tensor) -> torch.Tensor:
    """mean_i H(softmax(logits_i))."""
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(1).mean()


def ema(new: torch.Tensor, old: torch.Tensor, momentum: float) -> torch.Tensor:
    """c <- (1 - m) c_new + m c_old (official ``calculate_prototype``)."""
    return (1 - momentum) * new + momentum * old


def class_means(sums: torch.Tensor, counts: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
    """Per-class means sum_k / n_k; a class with no sample keeps its ``previous`` prototype (zeros
    when there is none), instead of the official code's 0/0 NaN."""
    means = sums / counts.clamp(min=1).to(sums.dtype)[:, None]
    fallback = previous if previous is not None else torch.zeros_like(means)
    return torch.where((counts > 0)[:, None], means, fallback.to(means.dtype))


@torch.no_grad()
def compute_prototypes(
    method, model, loader, num_classes: int, fraction: float, device, autocast, previous=None, extend=False
):
    """Class-mean features of every modality over the first floor(#batches * fraction) batches
    (at least one) of one pass of ``loader``, in eval mode (BN statistics frozen), no grad
    (official ``calculate_prototype``). With ``extend`` (first computation) batches are added one
    by one past the budget until every class has a sample or the pass ends.
    Returns (prototypes by modality, per-class counts)."""
    was_training = model.training
    model.eval()
    budget = max(1, math.floor(len(loader) * fraction + 1e-9))
    sums, counts = None, None
    for i, batch in enumerate(loader):
        if i >= budget and not (extend and bool((counts == 0).any())):
            break
        batch = to_device(batch, device)
        y = batch["label"]
        with autocast():
            feats = method.encode(model, batch)
        if sums is None:
            sums = {m: feats[m].new_zeros(num_classes, feats[m].shape[1], dtype=torch.float32) for m in feats}
            counts = torch.zeros(num_classes, dtype=torch.long, device=y.device)
        for m, f in feats.items():
            sums[m].index_add_(0, y, f.float())
        counts += torch.bincount(y, minlength=num_classes)
    model.train(was_training)
    prev = previous or {}
    return {m: class_means(sums[m], counts, prev.get(m)) for m in sums}, counts


# --------------------------------------------------------------------------- the method
@register_method
class PMR(TwoModalityMethod):
    name = "pmr"
    settings_toml = "pmr.toml"
    Hyper = PMRHyper
    epoch_windows = (("modulation_starts", "modulation_ends"),)
    choices = _CHOICES

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        if not 0 < params.get("proto_fraction", 0.1) <= 1:
            raise ConfigError("method.proto_fraction must be in (0, 1]")

    def __init__(self, hyper, modalities, num_classes, feature_dims):
        super().__init__(hyper, modalities, num_classes, feature_dims)
        self.protos: dict[str, torch.Tensor] | None = None
        self.proto_updates = 0  # computations so far; the first replaces, later ones use the EMA
        self._last_counts: list[int] | None = None

    # ---------------------------------------------------------------- prototypes
    def update_prototypes(self, ctx) -> None:
        """Recompute the prototypes from a fresh shuffled pass of the training loader; the first
        two computations (before epoch 0, after epoch 0) replace, later ones are EMA-blended."""
        loader = ctx.train_loader
        loader.set_epoch(_PROTO_EPOCH_OFFSET + ctx.epoch)  # the harness resets it before training
        new, counts = compute_prototypes(
            self,
            ctx.model,
            loader,
            self.num_classes,
            self.hp.proto_fraction,
            ctx.device,
            ctx.autocast,
            previous=self.protos,
            extend=self.protos is None,
        )
        replace = self.protos is None or self._first_after_training(ctx)
        if replace:
            self.protos = new
        else:
            self.protos = {m: ema(new[m], self.protos[m], self.hp.momentum_coef) for m in new}
        self.proto_updates += 1
        self._last_counts = counts.tolist()

    def _first_after_training(self, ctx) -> bool:
        # official: calculate_prototype(..., epoch=0) after epoch 0 uses no EMA
        return self.hp.proto_timing == "after_epoch" and ctx.epoch == 0

    def on_epoch_start(self, ctx):
        if self.hp.proto_timing == "epoch_start" or self.protos is None:
            self.update_prototypes(ctx)
        else:  # restored from a checkpoint on the CPU: move once, not every step
            self.protos = {m: p.to(ctx.device) for m, p in self.protos.items()}

    def on_epoch_end(self, ctx):
        if self.hp.proto_timing == "after_epoch":
            self.update_prototypes(ctx)

    # ---------------------------------------------------------------- step
    def training_step(self, model, batch, ctx):
        """Spec §3: L = CE(z, y) + beta_a PCE_a + beta_v PCE_v inside the window, CE(z, y) outside;
        one backward, one optimiser step. Prototypes are constants."""
        a, v = self.modalities
        y = batch["label"]
        opts = ctx.optimizers
        with ctx.autocast():
            feats = self.encode(model, batch)
            logits = model.heads(feats)
        loss_fused = F.cross_entropy(logits["fusion"].float(), y)
        q = {m: prototype_logits(feats[m], self.protos[m]) for m in self.modalities}
        pce = {m: F.cross_entropy(q[m], y) for m in self.modalities}
        with torch.no_grad():
            s_a = true_class_prob_sum(q[a], y)
            s_v = true_class_prob_sum(q[v], y)
            beta_a, beta_v, rho = rebalance_coefficients(s_a, s_v, self.hp.alpha)
        loss = loss_fused
        modulated = self.in_window(ctx.epoch)
        if modulated:
            loss = loss + beta_a * pce[a] + beta_v * pce[v]
        regularised = self.hp.per_weight > 0 and ctx.epoch < self.hp.per_epochs
        if regularised:
            # the dominant modality is the faster one: a if rho > 1, v if rho < 1, none at a tie
            ent_a, ent_v = mean_entropy(q[a]), mean_entropy(q[v])
            dom_weight_a = (rho > 1).float()
            dom_weight_v = (rho < 1).float()
            loss = loss - self.hp.per_weight * (dom_weight_a * ent_a + dom_weight_v * ent_v)
        opts.zero_grad()
        loss.backward()
        opts.step()

        ctx.log("ratio_proto", rho)
        ctx.log(f"beta_{a}", beta_a if modulated else torch.zeros_like(beta_a))
        ctx.log(f"beta_{v}", beta_v if modulated else torch.zeros_like(beta_v))
        ctx.log("modulated", float(modulated))
        for m in self.modalities:  # the prototype classifier (argmax of -d^m) on this batch
            ctx.log(f"proto_acc_{m}", (q[m].detach().argmax(1) == y).float().mean())
        out = {"loss": loss.detach(), "loss_fused": loss_fused.detach()}
        for m in self.modalities:
            out[f"pce_{m}"] = pce[m].detach()
            out[f"acc_{m}"] = (logits[m].detach().argmax(1) == y).float().mean()
        return out

    # ---------------------------------------------------------------- diagnostics and state
    def epoch_diagnostics(self):
        return {"proto_updates": self.proto_updates, "proto_class_counts": self._last_counts}

    def state_dict(self):
        return {
            "protos": {m: p.detach().cpu() for m, p in self.protos.items()} if self.protos else None,
            "proto_updates": self.proto_updates,
            "last_counts": self._last_counts,
        }

    def load_state_dict(self, state):
        self.protos = state.get("protos")
        self.proto_updates = state.get("proto_updates", 0)
        self._last_counts = state.get("last_counts")
