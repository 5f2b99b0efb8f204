"""``ogm_tpami``: the journal version of On-the-fly Gradient Modulation (specs/methods/opm.md §3b).

Wei, Hu, Du, Wen, "On-the-fly Modulation for Balanced Multimodal Learning", IEEE TPAMI 2024, the
journal extension of OGM-GE. Official code GeWu-Lab/BML_TPAMI2024 @ 4b3aa4fd (``code/main.py``
``train``, lines 116-169; ``code/scripts/train_ogm.sh``). It is ``ogm_ge`` (one fused
cross-entropy backward, coefficients from the split-logit confidence sums, the encoders' conv
gradients scaled and, for OGM-GE, isotropic noise of the per-tensor gradient std added) with three
differences of the journal code:

- a warm-up: no modulation in 0-indexed epochs ``0 .. warmup_epochs - 1`` (``warm_up = 1 if
  epoch <= 5``, ``main.py:91``), whatever the window says;
- the tie rule: with rho^a = s^a / s^v, ``rho^a > 1`` slows ``a`` (k^a = 1 - tanh(alpha rho^a)),
  otherwise, ties included, ``v`` is slowed (k^v = 1 - tanh(alpha s^v / s^a)); ``ogm_ge``'s code
  slows the first modality at a tie;
- ``ogm_plus`` (``--use_OGM_plus``, ``main.py:128-136``): the weaker modality's conv gradients
  are multiplied by ``plus_coeff`` (4) and the dominant's by 1 instead.

The GE noise is drawn from the run's method-owned stream ``"ogm_tpami/noise"`` (the official code
uses the global generator), so a resumed run draws the same noise. Two modalities only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmbench.methods.base import modality_accuracies
from mmbench.methods.ogm_ge import OGMGE, confidence_scores, modulate_gradients, scoped_params
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError

_CHOICES = {
    "modulation": ("OGM_GE", "OGM"),
    "noise": ("isotropic",),
    "param_scope": ("conv", "non_bias"),
}


@dataclass
class OGMTPAMIHyper:
    alpha: float = 0.8  # [code] scripts/train_ogm.sh --alpha 0.8 (argparse default 1.0, main.py:45)
    modulation: str = "OGM_GE"  # [code] main.py:36: "OGM_GE" | "OGM" (scaling without noise)
    modulation_starts: int = 0  # [code] first modulated epoch, 0-indexed, inclusive
    modulation_ends: int = 60  # [code] train_ogm.sh, inclusive (main.py:155)
    warmup_epochs: int = 6  # [code] main.py:91 warm_up = 1 if epoch <= 5: no modulation before epoch 6
    ogm_plus: bool = False  # [code] --use_OGM_plus: speed up the weaker modality instead
    plus_coeff: float = 4.0  # [code] main.py:130-135 coeff = 4
    noise: str = "isotropic"  # [code] N(0, std(g)^2); the paper's SGD-covariance noise is not implemented
    # "conv": 4-D gradients only (official); "non_bias": every non-1-D gradient (as ogm_ge, for
    # encoders without convolutions)
    param_scope: str = "conv"


def tpami_coefficients(
    score_a: torch.Tensor,
    score_v: torch.Tensor,
    alpha: float,
    ogm_plus: bool = False,
    plus_coeff: float = 4.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(k^a, k^v) of the journal code (``main.py:118-147``), tensors throughout.

    rho^a = s^a / s^v. Without ``ogm_plus``: rho^a > 1 -> (1 - tanh(alpha relu(rho^a)), 1), else
    (1, 1 - tanh(alpha relu(s^v / s^a))), so an exact tie slows ``v``. With ``ogm_plus``: rho^a > 1
    -> (1, plus_coeff), else (plus_coeff, 1).
    """
    rho_a = score_a / score_v
    rho_v = score_v / score_a
    one = torch.ones_like(rho_a)
    a_dominant = rho_a > 1
    if ogm_plus:
        plus = torch.full_like(rho_a, plus_coeff)
        return torch.where(a_dominant, one, plus), torch.where(a_dominant, plus, one)
    k_a = torch.where(a_dominant, 1 - torch.tanh(alpha * torch.relu(rho_a)), one)
    k_v = torch.where(a_dominant, one, 1 - torch.tanh(alpha * torch.relu(rho_v)))
    return k_a, k_v


def tpami_active(hp, epoch: int) -> bool:
    """Whether the journal OGM modulates in 0-indexed ``epoch``: after the warm-up and inside the
    inclusive window ``[modulation_starts, modulation_ends]`` (``main.py:91, 116, 155``)."""
    return epoch >= hp.warmup_epochs and hp.modulation_starts <= epoch <= hp.modulation_ends


def tpami_gradient_step(model, modalities, scores: dict, hp, generator: torch.Generator | None):
    """Scale (and, for OGM_GE, perturb) the scoped gradients of both encoders with the journal
    coefficients from the confidence sums ``scores``; returns (k^a, k^v). Call after ``backward``."""
    a, v = modalities
    k_a, k_v = tpami_coefficients(scores[a], scores[v], hp.alpha, hp.ogm_plus, hp.plus_coeff)
    ge = hp.modulation == "OGM_GE"
    for m, k in ((a, k_a), (v, k_v)):
        modulate_gradients(scoped_params(model.encoders[m], hp.param_scope), k, ge, generator if ge else None)
    return k_a, k_v


@register_method
class OGMTPAMI(OGMGE):
    name = "ogm_tpami"
    settings_toml = "ogm_tpami.toml"
    Hyper = OGMTPAMIHyper
    choices = _CHOICES

    @classmethod
    def validate_params(cls, params, spec):
        """Two modalities only (the official code's two encoders)."""
        if len(spec.modalities) != 2:
            raise ConfigError(
                f"{cls.name} supports exactly 2 modalities; {spec.name} has {len(spec.modalities)}: "
                f"{', '.join(spec.modalities)}"
            )
        super().validate_params(params, spec)

    def training_step(self, model, batch, ctx):
        """One CE backward on the fused logits; after the warm-up and inside the window, the journal
        coefficients scale (and GE perturbs) the encoders' conv gradients; optimiser step."""
        a, v = self.modalities
        y = batch["label"]
        logits, loss = self.joint_backward(model, batch, ctx)
        with torch.no_grad():
            scores = confidence_scores(logits, y, self.modalities)
        modulated = tpami_active(self.hp, ctx.epoch)
        if modulated:
            gen = ctx.generator("ogm_tpami/noise") if self.hp.modulation == "OGM_GE" else None
            k_a, k_v = tpami_gradient_step(model, self.modalities, scores, self.hp, gen)
        else:
            k_a, k_v = tpami_coefficients(
                scores[a], scores[v], self.hp.alpha, self.hp.ogm_plus, self.hp.plus_coeff
            )
        ctx.optimizers.step()

        ctx.log(f"coeff_{a}", k_a)
        ctx.log(f"coeff_{v}", k_v)
        ctx.log(f"ratio_{a}", scores[a] / scores[v])
        ctx.log(f"score_{a}", scores[a] / y.numel())
        ctx.log(f"score_{v}", scores[v] / y.numel())
        ctx.log("modulated", float(modulated))
        return {"loss": loss.detach(), **modality_accuracies(logits, y, self.modalities)}
