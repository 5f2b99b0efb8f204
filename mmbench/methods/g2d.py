"""``g2d``: Gradient-Guided Distillation.

Rakib and Bagavathi, "G2D: Boosting Multimodal Learning with Gradient-Guided Distillation", ICCV
2025 (arXiv 2506.21514). Official code: rAIson-Lab/G2D @ 95969d8 (``student.py:19-192`` the
student loop; ``utils/utils.py:19-28`` ``weight_init``, ``:210-292`` the sequential modality
prioritisation; ``models/fusion_modules.py:27-42`` ``LateFusion``; ``config.py`` the settings).

A late-fusion student (z^m = W_m phi^m + b_m per modality, z = mean_m z^m; xavier-normal weights,
zero bias) is distilled from frozen unimodal teachers (the modality's ``unimodal`` reference run:
its encoder gives phi^m_T, its linear head t^m), handed over by the harness on every start and
resume:

    L = w_ce CE(z, y) + sum_m [ w_logit T^2 KL(softmax(t^m / T) || softmax(z / T))
                               + w_feat mean((phi^m - phi^m_T)^2) ]     (``student.py:102-140``)

The logit terms distil the FUSED student logits towards every teacher. After the backward, inside
the SMP window (inclusive), the teachers' confidences s^m_T = sum_i softmax(t^m_i)[y_i] pick the
modality to suppress: with two modalities the more confident teacher's modality gets coefficient 0
and the other 1, and the scoped gradients of each encoder are multiplied by its coefficient
(``utils.py:243-288``); then one optimiser step.

Flags: ``smp_scope`` ``conv`` (code: tensors of 4 or more dimensions in the encoder, so BatchNorm
and biases keep their gradients) | ``encoder`` (every encoder tensor; needed for encoders without
conv kernels); ``smp_tie`` ``skip`` (an exact tie modulates nothing on that batch) | ``raise`` (the
code's ValueError); ``smp_multi`` for more than two modalities (no official code): ``lowest_only``
(only the least confident teacher's modality keeps its gradients) | ``suppress_highest``. Teachers
are the harness's selected unimodal runs, not the official test-set pick.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.methods.base import Method, check_choices
from mmbench.methods.heads import xavier_linear
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError

_CHOICES = {
    "smp_scope": ("conv", "encoder"),
    "smp_tie": ("skip", "raise"),
    "smp_multi": ("lowest_only", "suppress_highest"),
}


@dataclass
class G2DHyper:
    temperature: float = 1.0  # [code] config.py:120, 138
    w_ce: float = 1.0  # [code] config.py:108
    w_logit: float = 1.0  # [code] config.py:118, 136
    w_feat: float = 1.0  # [code] config.py:119, 137
    smp_start: int = 0  # [code] config.py:50, inclusive
    smp_end: int = 150  # [code] config.py:51 (of 300 epochs), inclusive
    smp_scope: str = "conv"  # [code] 4-D tensors only (utils.py:280-284)
    smp_tie: str = "skip"  # [guess] the code raises ValueError on a tie ("raise")
    smp_multi: str = "lowest_only"  # [guess] no official code for M > 2


# ----------------------------------------------------------------------------- the rule
def distillation_terms(z, teacher_logits, feats, teacher_feats, temperature: float):
    """Per modality: (T^2 KL(softmax(t^m/T) || softmax(z/T)) with 'batchmean', mean squared
    feature error) of the fused student logits z and features phi^m against the teachers."""
    log_p = F.log_softmax(z.float() / temperature, dim=1)
    kd = {
        m: F.kl_div(log_p, F.softmax(t.float() / temperature, dim=1), reduction="batchmean") * temperature**2
        for m, t in teacher_logits.items()
    }
    mse = {m: F.mse_loss(feats[m].float(), teacher_feats[m].float()) for m in teacher_feats}
    return kd, mse


def teacher_scores(teacher_logits: dict[str, torch.Tensor], y: torch.Tensor) -> dict[str, torch.Tensor]:
    """s^m_T = sum_i softmax(t^m_i)[y_i] (``utils.py:243-288``)."""
    return {m: F.softmax(t.float(), dim=1).gather(1, y[:, None]).sum() for m, t in teacher_logits.items()}


def smp_coefficients(
    scores: dict[str, float], tie: str = "skip", multi: str = "lowest_only"
) -> dict[str, float]:
    """0 for the suppressed modalities, 1 for the others. Two modalities: the more confident
    teacher's modality is suppressed; an exact tie suppresses none (``tie="skip"``) or raises as
    the code does. More: ``lowest_only`` keeps only the least confident, ``suppress_highest``
    zeroes only the most confident."""
    values = list(scores.values())
    if max(values) == min(values) or (multi == "suppress_highest" and values.count(max(values)) > 1):
        if tie == "raise":
            raise ValueError(f"g2d: equal teacher scores {scores} (the official code stops here)")
        return {m: 1.0 for m in scores}
    if len(scores) == 2 or multi == "suppress_highest":
        top = max(scores, key=scores.get)
        return {m: 0.0 if m == top else 1.0 for m in scores}
    low = min(scores, key=scores.get)
    return {m: 1.0 if m == low else 0.0 for m in scores}


# ----------------------------------------------------------------------------- heads
class LateFusionHeads(nn.Module):
    """``LateFusion``: ``Linear(d_m, K)`` per modality with its own bias; z = mean_m z^m."""

    def __init__(self, dims: dict[str, int], num_classes: int, modalities):
        super().__init__()
        self.modalities = tuple(modalities)
        self.unimodal = nn.ModuleDict({m: xavier_linear(dims[m], num_classes) for m in self.modalities})

    def forward(self, feats):
        out = {m: self.unimodal[m](feats[m]) for m in self.modalities}
        return {"fusion": sum(out.values()) / len(self.modalities), **out}


# ----------------------------------------------------------------------------- the method
@register_method
class G2D(Method):
    name = "g2d"
    settings_toml = "g2d.toml"
    paper = '"G2D: Boosting Multimodal Learning with Gradient-Guided Distillation", ICCV 2025'
    Hyper = G2DHyper
    needs_unimodal_teachers = True
    modality_logits = "the modality's late-fusion head, W_m phi^m + b_m (full bias)"
    fusion_logits = "late fusion, the mean of the per-modality heads"
    epoch_windows = (("smp_start", "smp_end"),)

    def __init__(self, *args):
        super().__init__(*args)
        self.teachers: dict[str, nn.Module] | None = None
        self.teacher_heads: dict[str, nn.Module] | None = None

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        check_choices(params, _CHOICES)
        if not params.get("temperature", 0) > 0:
            raise ConfigError(f"method.temperature must be > 0, got {params.get('temperature')!r}")

    def build_heads(self, feature_dims, num_classes):
        return LateFusionHeads(feature_dims, num_classes, self.modalities)

    def set_teachers(self, teachers):
        self.teachers = teachers

    def set_teacher_heads(self, heads):
        self.teacher_heads = heads

    @torch.no_grad()
    def _teach(self, batch, ctx):
        if self.teachers is None or self.teacher_heads is None:
            raise ConfigError("g2d has no teachers: the harness hands them over (needs_unimodal_teachers)")
        with ctx.autocast():
            feats = {m: self.teachers[m](batch[m]) for m in self.modalities}
            logits = {m: self.teacher_heads[m](feats[m]) for m in self.modalities}
        return feats, logits

    def _scoped(self, model, m: str):
        params = [p for p in model.encoders[m].parameters() if p.grad is not None]
        return params if self.hp.smp_scope == "encoder" else [p for p in params if p.dim() >= 4]

    def training_step(self, model, batch, ctx):
        """CE + fused-logit KD + feature MSE, one backward, SMP zeroing in the window, step."""
        y, hp = batch["label"], self.hp
        t_feats, t_logits = self._teach(batch, ctx)
        with ctx.autocast():
            feats = self.encode(model, batch)
            logits = model.heads(feats)
        ce = F.cross_entropy(logits["fusion"].float(), y)
        kd, mse = distillation_terms(logits["fusion"], t_logits, feats, t_feats, hp.temperature)
        loss = hp.w_ce * ce + sum(hp.w_logit * kd[m] + hp.w_feat * mse[m] for m in self.modalities)
        ctx.optimizers.zero_grad()
        loss.backward()
        out = {"loss": loss.detach(), "loss_ce": ce.detach()}
        if hp.smp_start <= ctx.epoch <= hp.smp_end:
            scores = teacher_scores(t_logits, y)
            coeff = smp_coefficients({m: float(s) for m, s in scores.items()}, hp.smp_tie, hp.smp_multi)
            for m in self.modalities:
                if coeff[m] != 1.0:
                    for p in self._scoped(model, m):
                        p.grad.mul_(coeff[m])
                ctx.log(f"teacher_score/{m}", scores[m])
                ctx.log(f"smp_coeff/{m}", coeff[m])
        ctx.optimizers.step()
        for m in self.modalities:
            out[f"kd_{m}"] = kd[m].detach()
            out[f"feat_{m}"] = mse[m].detach()
            out[f"acc_{m}"] = (logits[m].detach().argmax(1) == y).float().mean()
        return out
