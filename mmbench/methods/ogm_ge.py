"""``ogm_ge``: On-the-fly Gradient Modulation with noise.

OGM with Generalisation Enhancement. Peng, Wei, Deng, Wang, Hu, "Balanced Multimodal Learning via
On-the-fly Gradient Modulation", CVPR 2022; official code GeWu-Lab/OGM-GE_CVPR2022 (``main.py``
``train_epoch``). The model is the plain concat model trained with one cross-entropy; after the
backward pass the conv-kernel gradients of the dominant modality's encoder are scaled by ``k = 1 -
tanh(alpha * rho)`` (Eq. 10) and, for OGM-GE, isotropic Gaussian noise with the per-tensor
gradient std is added to the conv gradients of both encoders (Eq. 13 as released).

Two modalities only (the official code's): ``a`` is the first modality of the dataset, ``v`` the
second, as in the official ``(audio, visual)`` order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmbench.methods.base import TwoModalityMethod, modality_accuracies, true_class_prob_sum
from mmbench.methods.registry import register_method

_CHOICES = {
    "modulation": ("OGM_GE", "OGM"),
    "tie_policy": ("code", "paper"),
    "noise": ("isotropic",),
    "param_scope": ("conv", "non_bias"),
}


@dataclass
class OGMGEHyper:
    alpha: float = 0.1  # [code] README default 0.1 (CREMA-D 0.8)
    modulation: str = "OGM_GE"  # [code] "OGM_GE" | "OGM" (scaling without noise)
    modulation_starts: int = 0  # [code] first modulated epoch, 0-indexed, inclusive
    modulation_ends: int = 50  # [code] last modulated epoch, 0-indexed, inclusive
    # at an exact tie (rho = 1): "code" slows the first modality (else-branch), "paper" slows none
    tie_policy: str = "code"
    noise: str = "isotropic"  # [code] N(0, std(g)^2); the paper's SGD-covariance noise is not implemented
    # "conv": 4-D gradients only (official); "non_bias": every non-1-D gradient (BalanceBenchmark)
    param_scope: str = "conv"


# --------------------------------------------------------------------------- the algorithm
def confidence_scores(
    logits: dict[str, torch.Tensor], y: torch.Tensor, modalities
) -> dict[str, torch.Tensor]:
    """s^m = sum_i softmax(z^m_i)[y_i] over the batch (official ``score_a``/``score_v``), batched."""
    return {m: true_class_prob_sum(logits[m].float(), y) for m in modalities}


def modulation_coefficients(
    score_a: torch.Tensor, score_v: torch.Tensor, alpha: float, tie_policy: str = "code"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(k^a, k^v, rho^v) from the two confidence scores (official ``main.py`` ``train_epoch``).

    rho^v = s^v / s^a, rho^a = 1 / rho^v. If rho^v > 1: k^v = 1 - tanh(alpha rho^v), k^a = 1; else
    k^a = 1 - tanh(alpha rho^a), k^v = 1 (the official else-branch, so a tie slows ``a``). With
    ``tie_policy="paper"`` (Eq. 10) a tie gives 1 to both. No ``.item()``: tensors throughout.
    """
    if tie_policy not in _CHOICES["tie_policy"]:
        raise ValueError(f"unknown tie_policy {tie_policy!r}; choose code or paper")
    rho_v = score_v / score_a
    rho_a = 1.0 / rho_v
    one = torch.ones_like(rho_v)
    k_v = torch.where(rho_v > 1, 1 - torch.tanh(alpha * rho_v), one)
    slow_a = rho_v <= 1 if tie_policy == "code" else rho_v < 1
    k_a = torch.where(slow_a, 1 - torch.tanh(alpha * rho_a), one)
    return k_a, k_v, rho_v


def scoped_params(encoder: torch.nn.Module, scope: str) -> list[torch.nn.Parameter]:
    """Parameters of ``encoder`` whose gradients OGM touches: 4-D (conv kernels, official
    ``len(parms.grad.size()) == 4``) or, for ``"non_bias"``, every parameter with more than one
    dimension (BalanceBenchmark). BN weights and biases are 1-D and never touched."""
    if scope == "conv":
        return [p for p in encoder.parameters() if p.dim() == 4]
    if scope == "non_bias":
        return [p for p in encoder.parameters() if p.dim() > 1]
    raise ValueError(f"unknown param_scope {scope!r}; choose conv or non_bias")


@torch.no_grad()
def modulate_gradients(
    params, coeff: torch.Tensor, noise: bool, generator: torch.Generator | None = None
) -> None:
    """g <- k g (OGM) or g <- k g + eps, eps ~ N(0, (std(g) + 1e-8)^2) i.i.d. (OGM-GE).

    As the official code: the std is the unbiased std of the gradient *before* scaling, computed
    per tensor, and the noise is drawn for every tensor in scope even when k = 1. The noise comes
    from ``generator`` (seeded by the method), not the global RNG.
    """
    for p in params:
        g = p.grad
        if g is None:
            continue
        if noise:
            sigma = g.std() + 1e-8
            eps = torch.randn(g.shape, generator=generator, device=g.device, dtype=g.dtype)
            g.mul_(coeff.to(g.dtype)).add_(eps.mul_(sigma))
        else:
            g.mul_(coeff.to(g.dtype))


# --------------------------------------------------------------------------- the method
@register_method
class OGMGE(TwoModalityMethod):
    name = "ogm_ge"
    settings_toml = "ogm_ge.toml"
    Hyper = OGMGEHyper
    epoch_windows = (("modulation_starts", "modulation_ends"),)
    choices = _CHOICES

    def __init__(self, hyper, modalities, num_classes, feature_dims):
        super().__init__(hyper, modalities, num_classes, feature_dims)
        self._generator: torch.Generator | None = None

    def noise_generator(self, ctx) -> torch.Generator:
        """The GE noise generator, reseeded each step from (run seed, global step): the noise is a
        pure function of the run seed and the step, so a resumed run draws the same noise."""
        if self._generator is None or self._generator.device.type != ctx.device.type:
            self._generator = torch.Generator(device=ctx.device)
        self._generator.manual_seed((ctx.seed * 1_000_003 + ctx.global_step + 7919) % (2**62))
        return self._generator

    def training_step(self, model, batch, ctx):
        """Spec §3: one CE backward on the fused logits, coefficients from the split logits of the
        same forward, gradient modulation of the encoders' conv kernels, optimiser step."""
        a, v = self.modalities
        y = batch["label"]
        logits, loss = self.joint_backward(model, batch, ctx)

        with torch.no_grad():
            scores = confidence_scores(logits, y, self.modalities)
            k_a, k_v, rho_v = modulation_coefficients(scores[a], scores[v], self.hp.alpha, self.hp.tie_policy)
        modulated = self.in_window(ctx.epoch)
        if modulated:
            ge = self.hp.modulation == "OGM_GE"
            gen = self.noise_generator(ctx) if ge else None
            for m, k in ((a, k_a), (v, k_v)):
                modulate_gradients(scoped_params(model.encoders[m], self.hp.param_scope), k, ge, gen)
        ctx.optimizers.step()

        ctx.log(f"coeff_{a}", k_a)
        ctx.log(f"coeff_{v}", k_v)
        ctx.log(f"ratio_{v}", rho_v)
        ctx.log(f"score_{a}", scores[a] / y.numel())
        ctx.log(f"score_{v}", scores[v] / y.numel())
        ctx.log("modulated", float(modulated))
        return {"loss": loss.detach(), **modality_accuracies(logits, y, self.modalities)}
