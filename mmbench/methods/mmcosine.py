"""``mmcosine``: Multi-Modal Cosine loss (specs/methods/mmcosine.md).

Xu, Feng, Zhang, Hu, "MMCosine: Multi-Modal Cosine Loss Towards Balanced Audio-Visual
Fine-Grained Learning", ICASSP 2023. Official code GeWu-Lab/MMCosine_ICASSP23 @ 00ba0a9c
(``main_CD.py`` ``train_epoch`` lines 109-141 and ``valid``; ``main_vox2.py:182-193``). The
fused linear logits are replaced by the sum over modalities of scaled cosine similarities between
the L2-normalised features of a modality and the L2-normalised class rows of that modality's block
of the concat head's weight (``main_CD.py:113-118``, ``F.normalize``):

    z^m_ik = s <phi^m_i / ||phi^m_i||, w^m_k / ||w^m_k||>,   z = sum_m z^m,   L = CE(z, y)

No bias anywhere (it keeps its initial value and matters only for ``eval_logits = "linear"``).
``eval_logits = "linear"`` evaluates the fused head as ``main_CD.py``'s ``valid`` does, with the
plain W [phi^1; ...; phi^M] + b that training never optimised; the default evaluates the cosine
logits that training optimises (``main_vox2.py``). The supplementary's NCE term (``--lam``, default
0) is not implemented and a non-zero ``nce_weight`` is refused; only the concat head is supported
(the official gated/FiLM fusion modules have no counterpart here). Any number of modalities: the
formula sums over the blocks of ``feature_dims``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mmbench.methods.base import Method, check_choices, modality_accuracies
from mmbench.methods.heads import ConcatHead
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError

_CHOICES = {"eval_logits": ("cosine", "linear"), "fusion": ("concat",), "head_init": ("torch", "xavier")}


@dataclass
class MMCosineHyper:
    scaling: float = 10.0  # [code] main_CD.py:59 --scaling default 10 (README command)
    # "cosine": the fused cosine logits (main_vox2.py:182-193); "linear": main_CD.py's fused W phi + b
    eval_logits: str = "cosine"
    nce_weight: float = 0.0  # [code] main_CD.py:78 --lam default 0; the NCE term is not implemented
    fusion: str = "concat"  # [code] argparse default concat; gated/FiLM are not supported
    head_init: str = "torch"  # [code] weight_init is imported but never applied: PyTorch default


def cosine_logits(
    feats: dict[str, torch.Tensor], weight: torch.Tensor, dims, modalities, scaling: float
) -> dict[str, torch.Tensor]:
    """``{"fusion": z, m: z^m}``: z^m = s normalize(phi^m) normalize(W_m)^T with each class row of
    the modality's column block W_m normalised (``F.normalize``, eps 1e-12), z = sum_m z^m."""
    blocks = torch.split(weight, list(dims), dim=1)
    out = {
        m: scaling * (F.normalize(feats[m], dim=1) @ F.normalize(w, dim=1).t())
        for m, w in zip(modalities, blocks)
    }
    return {"fusion": sum(out[m] for m in modalities), **out}


class CosineHead(ConcatHead):
    """The concat head whose forward gives the MMCosine logits (its weight blocks, no bias);
    ``linear`` gives the plain W [phi^1; ...; phi^M] + b."""

    def __init__(self, dims, num_classes, modalities, scaling: float, init: str = "torch"):
        super().__init__(dims, num_classes, modalities, init=init)
        self.scaling = float(scaling)

    def forward(self, feats):
        return cosine_logits(feats, self.fc.weight, self.dims, self.modalities, self.scaling)

    def linear(self, feats):
        return self.fc(torch.cat([feats[m] for m in self.modalities], dim=1))


@register_method
class MMCosine(Method):
    name = "mmcosine"
    settings_toml = "mmcosine.toml"
    Hyper = MMCosineHyper
    modality_logits = "s * cos(phi^m, class vectors of W_m)"
    fusion_logits = "sum of the per-modality cosine logits"

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        check_choices(params, _CHOICES)
        if params.get("nce_weight", 0.0) != 0:
            raise ConfigError(
                "mmcosine: method.nce_weight must be 0; the supplementary's NCE term between the "
                "modalities' features (main_CD.py:18-50) is not implemented"
            )
        if not params.get("scaling", 10.0) > 0:
            raise ConfigError(f"mmcosine: method.scaling must be positive, got {params.get('scaling')!r}")

    def head_meanings(self):
        heads = super().head_meanings()
        if self.hp.eval_logits == "linear":
            heads["fusion"] = (
                "concat head W [phi^1; ...; phi^M] + b (main_CD.py's evaluation; not trained as such)"
            )
        return heads

    def build_heads(self, feature_dims, num_classes):
        dims = [feature_dims[m] for m in self.modalities]
        return CosineHead(dims, num_classes, self.modalities, self.hp.scaling, self.hp.head_init)

    def training_step(self, model, batch, ctx):
        """L = CE(s sum_m cos(phi^m, W_m), y) (``main_CD.py:141``); one backward, one step."""
        y = batch["label"]
        with ctx.autocast():
            logits = model.heads(self.encode(model, batch))
            loss = F.cross_entropy(logits["fusion"].float(), y)
        ctx.optimizers.zero_grad()
        loss.backward()
        ctx.optimizers.step()

        with torch.no_grad():
            blocks = torch.split(model.heads.fc.weight, list(model.heads.dims), dim=1)
            for m, w in zip(self.modalities, blocks):
                z = logits[m].detach().float()
                ctx.log(f"ce_{m}", F.cross_entropy(z, y))
                ctx.log(f"cos_{m}", z.gather(1, y[:, None]).mean() / self.hp.scaling)  # true-class cosine
                ctx.log(f"weight_norm_{m}", w.norm())
        return {"loss": loss.detach(), **modality_accuracies(logits, y, self.modalities)}

    @torch.no_grad()
    def predict(self, model, batch):
        """The cosine logits (``eval_logits = "linear"``: the fused head is W [phi] + b)."""
        feats = self.encode(model, batch)
        out = model.heads(feats)
        if self.hp.eval_logits == "linear":
            out["fusion"] = model.heads.linear(feats)
        return out
