"""``mlb``: Multi-Loss Balanced gradient modulation.

Kontras, Chatzichristos, Blaschko, De Vos, "Improving Multimodal Learning with Multi-Loss Gradient
Modulation", BMVC 2024 (arXiv 2405.07930). Official code: kkontras/MLB @ 68ad48d and @ 357b5ce
(``agents/general_agent/helpers/Bias_Infusion.py`` ``Bias_Infusion_MLB.on_backward_end`` and
``_equalize_gradients``; ``Bias_Infusion_MLB_3d`` for three modalities), shipped again as a
baseline in kkontras/MCR @ 338d370 (``run.sh`` holds the per-dataset alpha and beta).

The model is the concat model plus one auxiliary linear head per modality on the live features.
One backward of ``L = w_f CE(z, y) + sum_m w_m CE(u^m, y)``; then, from the same batch's detached
unimodal logits, the pace of each modality ``s_m = mean_i softmax(u^m_i)[y_i]`` gives
``r_m = mean_{j != m} s_j / s_m`` and the coefficient

    k_m = 1 + (beta - 1) tanh(alpha (r_m - 1))   if r_m > 1 (the slower modality; ``rule="beta"``)
    k_m = 1 + tanh(alpha (r_m - 1))               otherwise

(``rule="symmetric"``: the second line for every r_m, the code's ``tanh_mode`` unset). The
gradients of encoder m, of its unimodal head and of the fused weight's column block W_m are
multiplied by k_m in place (``_equalize_gradients``: ``enc_m``, ``mod_m`` and ``fc_m_lin.weight``;
the fused bias is not scaled); then one optimiser step.

Flags (the code's variants): ``rule`` ``beta`` (default, ``--tanh_mode_beta``) | ``symmetric``;
``score`` ``prob`` (default) | ``jsd`` (``tanh_mode "2_jsd"``: s_m = JSD(u^m, z) with the code's
clamps, ``js_divergence``). For three modalities the released code compares ``tanh_mode`` with
the integer 2 while its launcher stores the string "2", so it always applies the symmetric rule;
the default applies the beta rule for every M (the README formula) and ``rule="symmetric"``
reproduces that release.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.methods.base import Method, check_choices
from mmbench.methods.divergences import js_divergence
from mmbench.methods.heads import ConcatHead, xavier_linear
from mmbench.methods.registry import register_method

_CHOICES = {"rule": ("beta", "symmetric"), "score": ("prob", "jsd")}


@dataclass
class MLBHyper:
    alpha: float = 0.5  # [code] kkontras/MCR run.sh, CREMA-D ResNet
    beta: float = 10.0  # [code] run.sh --tanh_mode_beta (beta_max)
    rule: str = "beta"  # [code] tanh_mode "2"; "symmetric": 1 + tanh(alpha (r - 1)) for every r
    score: str = "prob"  # [code] true-class probability; "jsd": tanh_mode "2_jsd"
    w_fusion: float = 1.0  # [code] MLB.json multi_supervised_w combined
    w_unimodal: float = 1.0  # [code] MLB.json multi_supervised_w c, g
    modulation_starts: int = 0  # [code] bias_infusion.starting_epoch 0, inclusive
    modulation_ends: int = 1500  # [code] bias_infusion.ending_epoch 1500, inclusive


# ----------------------------------------------------------------------------- the rule
def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.promote_types(t.dtype, torch.float32))


def pace_scores(unimodal: dict[str, torch.Tensor], y: torch.Tensor, fused=None, score: str = "prob"):
    """s_m per modality: the batch mean of the true-class softmax probability of u^m, or
    (``score="jsd"``) the JSD between u^m and the fused logits; detached, in fp32 at least."""
    if score == "jsd":
        return {m: js_divergence(_at_least_fp32(u), _at_least_fp32(fused)) for m, u in unimodal.items()}
    return {m: F.softmax(_at_least_fp32(u), dim=1).gather(1, y[:, None]).mean() for m, u in unimodal.items()}


def coefficients(scores: dict[str, torch.Tensor], alpha: float, beta: float, rule: str = "beta"):
    """(r, k) per modality: r_m = mean of the other modalities' scores / s_m, and k_m from the
    tanh rule above (two modalities: r_a = s_v / s_a, r_v = s_a / s_v)."""
    names = list(scores)
    ratios, coeffs = {}, {}
    for m in names:
        others = torch.stack([scores[j] for j in names if j != m]).mean()
        r = others / scores[m]
        t = torch.tanh(alpha * (r - 1))
        k = 1 + t
        if rule == "beta":
            k = torch.where(r > 1, 1 + (beta - 1) * t, k)
        ratios[m], coeffs[m] = r, k
    return ratios, coeffs


# ----------------------------------------------------------------------------- heads
class MultiLossHeads(nn.Module):
    """The fused concat head (``fusion``, ``Base_Model`` ``fc_m_lin`` blocks with the bias split
    b/M) and one ``Linear(d_m, K)`` auxiliary head per modality (``unimodal[m]``, the encoders'
    own classifiers in the code)."""

    def __init__(self, dims: dict[str, int], num_classes: int, modalities):
        super().__init__()
        self.modalities = tuple(modalities)
        self.fusion = ConcatHead([dims[m] for m in self.modalities], num_classes, self.modalities)
        self.unimodal = nn.ModuleDict({m: xavier_linear(dims[m], num_classes) for m in self.modalities})

    def forward(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {"fusion": self.fusion.fc(torch.cat([feats[m] for m in self.modalities], dim=1))}
        out.update({m: self.unimodal[m](feats[m]) for m in self.modalities})
        return out


# ----------------------------------------------------------------------------- the method
@register_method
class MLB(Method):
    name = "mlb"
    settings_toml = "mlb.toml"
    paper = '"Improving Multimodal Learning with Multi-Loss Gradient Modulation", BMVC 2024'
    Hyper = MLBHyper
    modality_logits = "the modality's auxiliary linear head (multi-loss)"
    fusion_logits = "concat head, W [phi^1; ...; phi^M] + b"
    epoch_windows = (("modulation_starts", "modulation_ends"),)

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        check_choices(params, _CHOICES)

    def build_heads(self, feature_dims, num_classes):
        return MultiLossHeads(feature_dims, num_classes, self.modalities)

    def scale_branch_gradients(self, model, coeffs: dict[str, torch.Tensor]) -> None:
        """``_equalize_gradients``: grad *= k_m on encoder m, its unimodal head and the fused
        weight's column block W_m; the fused bias keeps its gradient."""
        fc = model.heads.fusion.fc
        blocks = torch.split(torch.arange(fc.weight.shape[1]), model.heads.fusion.dims)
        for m, cols in zip(self.modalities, blocks):
            k = coeffs[m]
            for p in list(model.encoders[m].parameters()) + list(model.heads.unimodal[m].parameters()):
                if p.grad is not None:
                    p.grad.mul_(k.to(p.grad.dtype))
            if fc.weight.grad is not None:
                fc.weight.grad[:, cols[0] : cols[-1] + 1] *= k.to(fc.weight.grad.dtype)

    def training_step(self, model, batch, ctx):
        """One forward, L = w_f CE(z) + sum_m w_m CE(u^m), one backward, coefficients from the
        same batch's detached unimodal logits, in-place branch scaling inside the window, step."""
        y, hp = batch["label"], self.hp
        with ctx.autocast():
            logits = model.heads(self.encode(model, batch))
        loss_f = F.cross_entropy(logits["fusion"].float(), y)
        loss_u = {m: F.cross_entropy(logits[m].float(), y) for m in self.modalities}
        loss = hp.w_fusion * loss_f + hp.w_unimodal * sum(loss_u.values())
        ctx.optimizers.zero_grad()
        loss.backward()
        scores = pace_scores({m: logits[m] for m in self.modalities}, y, logits["fusion"], hp.score)
        ratios, coeffs = coefficients(scores, hp.alpha, hp.beta, hp.rule)
        if hp.modulation_starts <= ctx.epoch <= hp.modulation_ends:
            self.scale_branch_gradients(model, coeffs)
        ctx.optimizers.step()
        out = {"loss": loss.detach(), "loss_fusion": loss_f.detach()}
        for m in self.modalities:
            ctx.log(f"score/{m}", scores[m])
            ctx.log(f"ratio/{m}", ratios[m])
            ctx.log(f"coeff/{m}", coeffs[m])
            out[f"loss_{m}"] = loss_u[m].detach()
            out[f"acc_{m}"] = (logits[m].detach().argmax(1) == y).float().mean()
        return out
