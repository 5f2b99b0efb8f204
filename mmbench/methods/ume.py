"""``ume``: Uni-Modal Ensemble (specs/methods/umt.md).

Du, Teng, Li, Liu, Yuan, Wang, Yuan, Zhao, "On Uni-Modal Feature Learning in Supervised
Multi-Modal Learning", ICML 2023 (arXiv 2305.01233), Sec. 4: train one uni-modal model per
modality independently and ensemble their outputs. No official code is public and
BalanceBenchmark has no UME; everything below follows the paper's description.

- Heads: one ``Linear(d_m, K)`` per modality (as ``unimodal``), z^m = head_m(phi^m).
- ``ume_source = "joint_run"`` (default): L = sum_m CE(z^m, y), one backward and one step. Each
  encoder only receives its own head's gradient, so the run equals M independent unimodal runs
  sharing a data order; model selection uses the ensemble's validation metric.
- ``ume_source = "reference_runs"``: no training. A fresh run loads the selected encoders and
  heads of the ``unimodal`` reference runs (the harness's ``init_from_unimodal`` lookup) and
  evaluates the ensemble; its steps do no optimiser step and leave BN statistics alone (the
  forward runs in eval mode), so every epoch evaluates the same model; run it with ``epochs=1``.
- ``predict``: ``{"fusion": mean_m z^m, m: z^m}`` (``ume_combine = "logits"``); with ``"probs"``
  the fusion entry is log(mean_m softmax(z^m)), so argmax and softmax-based metrics see the mean
  probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmbench.methods.base import Method, check_choices, modality_accuracies
from mmbench.methods.heads import xavier_linear
from mmbench.methods.registry import register_method

_CHOICES = {"ume_combine": ("logits", "probs"), "ume_source": ("joint_run", "reference_runs")}


@dataclass
class UMEHyper:
    ume_combine: str = "logits"  # [guess] mean of the logits; "probs" = mean of the probabilities
    ume_source: str = "joint_run"  # benchmark choice; "reference_runs" ensembles the unimodal runs
    head_init: str = "xavier"  # as unimodal's head
    unimodal_suffix: str = ""  # reference_runs: unimodal-<m>_<suffix> (their tag)


def ensemble_logits(logits: dict[str, torch.Tensor], modalities, combine: str = "logits") -> torch.Tensor:
    """mean_m z^m, or log(mean_m softmax(z^m)) for ``combine = "probs"``."""
    stacked = torch.stack([logits[m] for m in modalities])
    if combine == "logits":
        return stacked.mean(0)
    if combine == "probs":
        return torch.logsumexp(F.log_softmax(stacked, dim=-1), dim=0) - math.log(len(modalities))
    raise ValueError(f"unknown ume_combine {combine!r}; choose logits or probs")


def ume_loss(logits: dict[str, torch.Tensor], y: torch.Tensor, modalities) -> torch.Tensor:
    """L = sum_m CE(z^m, y): independent unimodal losses."""
    return sum(F.cross_entropy(logits[m].float(), y) for m in modalities)


class UnimodalHeads(nn.Module):
    """One linear head per modality; forward returns ``{"fusion": ensemble, m: z^m}``."""

    def __init__(self, dims: dict[str, int], num_classes: int, modalities, combine: str, init: str):
        super().__init__()
        self.modalities = tuple(modalities)
        self.combine = combine
        self.fc = nn.ModuleDict({m: xavier_linear(dims[m], num_classes, init) for m in self.modalities})

    def forward(self, feats):
        out = {m: self.fc[m](feats[m]) for m in self.modalities}
        return {"fusion": ensemble_logits(out, self.modalities, self.combine), **out}


@register_method
class UME(Method):
    name = "ume"
    settings_toml = "ume.toml"
    Hyper = UMEHyper
    modality_logits = "independently trained unimodal head"
    fusion_logits = "mean of the unimodal logits"

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        check_choices(params, _CHOICES)

    @classmethod
    def uses_unimodal_init(cls, params):
        return params.get("ume_source") == "reference_runs"

    def head_meanings(self):
        fusion = (
            self.fusion_logits
            if self.hp.ume_combine == "logits"
            else "log of the mean of the unimodal softmax probabilities"
        )
        member = (
            self.modality_logits
            if self.hp.ume_source == "joint_run"
            else "the unimodal reference run's selected head"
        )
        return {"fusion": fusion, **{m: member for m in self.active_modalities}}

    def build_heads(self, feature_dims, num_classes):
        return UnimodalHeads(
            feature_dims, num_classes, self.modalities, self.hp.ume_combine, self.hp.head_init
        )

    def init_from_unimodal(self, model, weights):
        """``ume_source = "reference_runs"``: encoder m and head m are the reference run's selected ones."""
        for m in self.modalities:
            model.encoders[m].load_state_dict(weights[m]["encoder"])
            model.heads.fc[m].load_state_dict(weights[m]["head"])

    def training_step(self, model, batch, ctx):
        y = batch["label"]
        if self.hp.ume_source == "reference_runs":  # evaluation only: no update of weights or BN statistics
            was_training = model.training
            model.eval()
            with torch.no_grad(), ctx.autocast():
                logits = model.heads(self.encode(model, batch))
                loss = ume_loss(logits, y, self.modalities)
            model.train(was_training)
            return {"loss": loss.detach(), **modality_accuracies(logits, y, self.modalities)}
        with ctx.autocast():
            logits = model.heads(self.encode(model, batch))
        losses = {m: F.cross_entropy(logits[m].float(), y) for m in self.modalities}
        loss = sum(losses.values())
        ctx.optimizers.zero_grad()
        loss.backward()
        ctx.optimizers.step()
        out = {"loss": loss.detach(), **{f"loss_{m}": v.detach() for m, v in losses.items()}}
        return {**out, **modality_accuracies(logits, y, self.modalities)}
