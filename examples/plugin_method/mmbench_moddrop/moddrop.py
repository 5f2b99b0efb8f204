"""``moddrop``: modality dropout on the fused features (ModDrop, Neverova et al., TPAMI 2016).

Neverova, Wolf, Taylor, Nebout, "ModDrop: adaptive multi-modal gesture recognition", IEEE TPAMI
38(8), 2016 (arXiv:1501.00102), Sec. 3.2 "ModDrop": during fusion training each modality's input
to the shared layer is multiplied by a Bernoulli selector delta^k, so that whole modalities are
dropped at random and the network cannot lean on one of them:

    z = W [delta^1 phi^1; ...; delta^M phi^M] + b,   delta^k ~ Bernoulli(1 - p), per sample.

At test time every modality is present (delta^k = 1). What is kept from the paper: the per-sample,
per-modality selectors on the features entering the fusion layer, without rescaling. What is not:
its modality-wise pre-training and gradual fusion of a multi-scale gesture network; here the
selectors act on mmbench's shared backbones and concat head, so the comparison with ``joint`` is
exactly "same model, same data, plus ModDrop".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mmbench.methods.base import Method


@dataclass
class ModDropHyper:
    p: float = 0.25  # [guess] drop probability per modality and sample; tune per dataset (moddrop.toml)


class ModDrop(Method):
    name = "moddrop"
    Hyper = ModDropHyper
    settings_toml = "moddrop.toml"  # per-dataset settings with their sources

    def drop(self, feats: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Features times per-sample selectors delta^k ~ Bernoulli(1 - p), one column per modality."""
        first = next(iter(feats.values()))
        keep = torch.rand(first.shape[0], len(self.modalities), device=first.device) >= self.hp.p
        dropped = {m: feats[m] * keep[:, i : i + 1].to(feats[m].dtype) for i, m in enumerate(self.modalities)}
        return dropped, keep

    def training_step(self, model, batch, ctx) -> dict:
        """L = CE(W [delta^1 phi^1; ...] + b, y); one backward, one step (Method's joint step)."""
        y = batch["label"]
        with ctx.autocast():
            feats, keep = self.drop(self.encode(model, batch))
            loss = F.cross_entropy(model.heads(feats)["fusion"].float(), y)
        ctx.optimizers.zero_grad()
        loss.backward()
        ctx.optimizers.step()
        for i, m in enumerate(self.modalities):
            ctx.log(f"kept_{m}", keep[:, i].float().mean())
        return {"loss": loss.detach()}

    # predict: Method's default, every modality present (the concat head's fused and split logits)
