"""``mmpareto``: MMPareto.

Wei and Hu, "MMPareto: Boosting Multimodal Learning with Innocent Unimodal Assistance", ICML 2024.
Official code: GeWu-Lab/MMPareto_ICML2024 (``code/MMPareto.py``, ``code/min_norm_solvers.py``,
``code/models/models.py``).

A fused head on the concatenation and a separate linear head per modality are trained with
``L_mm + sum_m L_m``. For each encoder, the gradient of ``L_mm`` and of that modality's ``L_m``
are averaged when they agree (cos > 0) and combined with the closed-form two-vector min-norm
(Pareto) weights when they conflict; each parameter tensor is then rescaled to the norm of the
plain ``L_total`` gradient when that is larger, and multiplied by ``gamma``. Heads keep the plain
gradient of their own loss. The per-loss gradients come from ``torch.autograd.grad`` (M + 1
backward passes; the official code does M + 2 ``backward`` calls for the same gradients).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.methods.base import Method
from mmbench.methods.heads import xavier_linear
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError


@dataclass
class MMParetoHyper:
    gamma: float = 1.5  # [code] hard-coded gamma=1.5 in MMPareto.py train_epoch
    rescale_scope: str = "tensor"  # [code] r per parameter tensor; "encoder": one r per encoder
    gamma_always: bool = True  # [code] gamma multiplies every encoder tensor, rescaled or not
    cos_rule: str = "strict"  # [code] cos > 0 averages, cos = 0 goes to the solver; "nonstrict": >= 0
    head_init: str = "torch"  # [code] MMPareto.py applies no weight_init: PyTorch default


# ----------------------------------------------------------------------------- the rule
def min_norm_2(v11: torch.Tensor, v12: torch.Tensor, v22: torch.Tensor) -> torch.Tensor:
    """Weight c of g1 in min_c ||c g1 + (1 - c) g2||^2 from the three inner products
    (``MinNormSolver._min_norm_element_from2``): 0.999 if v12 >= v11, 0.001 if v12 >= v22,
    else (v22 - v12) / (v11 + v22 - 2 v12). Tensor-valued, no host synchronisation."""
    denom = v11 + v22 - 2 * v12
    interior = (v22 - v12) / torch.where(denom == 0, torch.ones_like(denom), denom)
    c = torch.where(v12 >= v22, torch.full_like(v11, 0.001), interior)
    return torch.where(v12 >= v11, torch.full_like(v11, 0.999), c)


def pareto_weights(g1: torch.Tensor, g2: torch.Tensor, cos_rule: str = "strict"):
    """(cos, w1) for two flat gradients: w1 = 0.5 when they agree, else the min-norm weight.

    ``cos_rule="strict"``: agree iff cos > 0 (code: ``if this_cos > 0``)."""
    dt = torch.promote_types(g1.dtype, torch.float32)
    g1, g2 = g1.to(dt), g2.to(dt)
    v11, v12, v22 = g1 @ g1, g1 @ g2, g2 @ g2
    cos = v12 / torch.clamp(torch.sqrt(v11 * v22), min=1e-8)  # F.cosine_similarity's eps
    agree = cos > 0 if cos_rule == "strict" else cos >= 0
    w1 = torch.where(agree, torch.full_like(cos, 0.5), min_norm_2(v11, v12, v22))
    return cos, w1


def combine_encoder_grads(
    g_mm: list[torch.Tensor],
    g_u: list[torch.Tensor],
    gamma: float = 1.5,
    scope: str = "tensor",
    gamma_always: bool = True,
    cos_rule: str = "strict",
):
    """MMPareto's gradient for one encoder's tensors (official ``code/MMPareto.py`` training loop).

    ``h = 2 w1 g_mm + 2 w2 g_u``; ``r = ||g_mm + g_u|| / ||h||`` (per tensor, or over the whole
    encoder with ``scope="encoder"``; r = 1 where ||h|| = 0); the result is ``gamma * r * h`` if
    r > 1 else ``gamma * h`` (``gamma_always=False``: ``h`` unscaled when r <= 1).
    Returns (new gradients, cos, w1)."""
    shapes = [g.shape for g in g_mm]
    sizes = [g.numel() for g in g_mm]
    dt = torch.promote_types(g_mm[0].dtype, torch.float32)  # fp32 at least (bf16 grads under AMP)
    flat1 = torch.cat([g.reshape(-1) for g in g_mm]).to(dt)
    flat2 = torch.cat([g.reshape(-1) for g in g_u]).to(dt)
    cos, w1 = pareto_weights(flat1, flat2, cos_rule)
    h = 2 * w1 * flat1 + 2 * (1 - w1) * flat2
    total = flat1 + flat2  # gradient of L_total on this encoder (other unimodal losses give 0)
    if scope == "tensor":
        seg = torch.repeat_interleave(
            torch.arange(len(sizes), device=h.device), torch.tensor(sizes, device=h.device)
        )
        zeros = torch.zeros(len(sizes), device=h.device, dtype=dt)
        n_total = zeros.index_add(0, seg, total * total).sqrt()
        n_h = zeros.index_add(0, seg, h * h).sqrt()
    elif scope == "encoder":
        seg = torch.zeros(h.numel(), dtype=torch.long, device=h.device)
        n_total, n_h = total.norm().reshape(1), h.norm().reshape(1)
    else:
        raise ConfigError(f"unknown mmpareto rescale_scope {scope!r}; choose tensor or encoder")
    r = torch.where(n_h > 0, n_total / torch.where(n_h > 0, n_h, torch.ones_like(n_h)), torch.ones_like(n_h))
    rescaled = r > 1
    factor = torch.where(rescaled, r, torch.ones_like(r))
    if gamma_always:
        factor = factor * gamma
    else:
        factor = torch.where(rescaled, factor * gamma, factor)
    out = h * factor[seg]
    grads = [t.reshape(s) for t, s in zip(torch.split(out, sizes), shapes)]
    return grads, cos, w1


# ----------------------------------------------------------------------------- heads
class ParetoHeads(nn.Module):
    """Fused ``Linear(D, K)`` on the concatenation (``fusion``) and a separate ``Linear(d_m, K)``
    per modality (``unimodal[m]``), as ``AVClassifier.head`` / ``head_audio`` / ``head_video``
    in the official ``models/models.py`` (own parameters, not slices of the fused head)."""

    def __init__(self, dims: dict[str, int], num_classes: int, modalities, init: str):
        super().__init__()
        self.modalities = tuple(modalities)
        self.fusion = xavier_linear(sum(dims[m] for m in self.modalities), num_classes, init)
        self.unimodal = nn.ModuleDict({m: xavier_linear(dims[m], num_classes, init) for m in self.modalities})

    def forward(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {"fusion": self.fusion(torch.cat([feats[m] for m in self.modalities], dim=1))}
        out.update({m: self.unimodal[m](feats[m]) for m in self.modalities})
        return out


# ----------------------------------------------------------------------------- the method
@register_method
class MMPareto(Method):
    name = "mmpareto"
    settings_toml = "mmpareto.toml"
    Hyper = MMParetoHyper
    modality_logits = "the modality's own head"
    fusion_logits = "fused linear head on the concatenation"

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        if params.get("rescale_scope") not in ("tensor", "encoder"):
            raise ConfigError("method.rescale_scope must be 'tensor' (official code) or 'encoder'")
        if params.get("cos_rule") not in ("strict", "nonstrict"):
            raise ConfigError("method.cos_rule must be 'strict' (official code) or 'nonstrict'")

    def build_heads(self, feature_dims, num_classes):
        return ParetoHeads(feature_dims, num_classes, self.modalities, self.hp.head_init)

    def training_step(self, model, batch, ctx):
        """One forward; g_mm = dL_mm/d(encoders, fused head); g_u[m] = dL_m/d(encoder m, head m);
        per encoder the Pareto combination; heads get their own loss's gradient; one step."""
        y = batch["label"]
        hp = self.hp
        with ctx.autocast():
            feats = self.encode(model, batch)
            logits = model.heads(feats)
        loss_mm = F.cross_entropy(logits["fusion"].float(), y)
        loss_u = {m: F.cross_entropy(logits[m].float(), y) for m in self.modalities}

        enc = {m: [p for p in model.encoders[m].parameters() if p.requires_grad] for m in self.modalities}
        fused = list(model.heads.fusion.parameters())
        flat_enc = [p for m in self.modalities for p in enc[m]]
        g_all = torch.autograd.grad(loss_mm, flat_enc + fused, retain_graph=True, allow_unused=True)
        g_mm, i = {}, 0
        for m in self.modalities:
            g_mm[m] = g_all[i : i + len(enc[m])]
            i += len(enc[m])
        new_grads: dict[nn.Parameter, torch.Tensor | None] = dict(zip(fused, g_all[i:]))
        out = {"loss": (loss_mm + sum(loss_u.values())).detach(), "loss_mm": loss_mm.detach()}
        for j, m in enumerate(self.modalities):
            head_m = list(model.heads.unimodal[m].parameters())
            last = j == len(self.modalities) - 1
            g = torch.autograd.grad(loss_u[m], enc[m] + head_m, retain_graph=not last, allow_unused=True)
            g_u = g[: len(enc[m])]
            new_grads.update(zip(head_m, g[len(enc[m]) :]))
            used = [k for k, (a, b) in enumerate(zip(g_mm[m], g_u)) if a is not None or b is not None]
            if used:
                a = [g_mm[m][k] if g_mm[m][k] is not None else torch.zeros_like(enc[m][k]) for k in used]
                b = [g_u[k] if g_u[k] is not None else torch.zeros_like(enc[m][k]) for k in used]
                combined, cos, w1 = combine_encoder_grads(
                    a, b, hp.gamma, hp.rescale_scope, hp.gamma_always, hp.cos_rule
                )
                new_grads.update({enc[m][k]: gk.to(enc[m][k].dtype) for k, gk in zip(used, combined)})
                ctx.log(f"cos/{m}", cos)
                ctx.log(f"w_mm/{m}", w1)
                ctx.log(f"conflict/{m}", ((cos <= 0) if hp.cos_rule == "strict" else (cos < 0)).float())
            out[f"loss_{m}"] = loss_u[m].detach()
            out[f"acc_{m}"] = (logits[m].detach().argmax(1) == y).float().mean()

        opt = ctx.optimizers
        opt.zero_grad(set_to_none=True)
        for p, g in new_grads.items():
            p.grad = g  # None (unused) leaves the parameter out of the step, as the official code
        opt.step()
        return out
