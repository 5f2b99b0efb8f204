"""Divergences and contrastive losses shared by the methods of the kkontras code bases (MLB, MCR).

Both follow kkontras/MCR @ 338d370 ``agents/general_agent/helpers/Bias_Infusion.py``:
``js_divergence`` (also in kkontras/MLB ``Bias_Infusion_MLB.on_backward_end``) and
``nt_xent_loss`` (pytorch_metric_learning's ``NTXentLoss`` with labels, restated).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def js_divergence(logits_1: torch.Tensor, logits_2: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence of two batches of logits as the official ``js_divergence``:
    logits clamped to +-1e7, probabilities and their mean clamped to [1e-20, 1],
    ``0.5 (KL(p1 || m) + KL(p2 || m))`` with ``batchmean`` reduction over the rows."""
    p1 = F.softmax(logits_1.clamp(-1e7, 1e7), dim=1)
    p2 = F.softmax(logits_2.clamp(-1e7, 1e7), dim=1)
    log_m = (0.5 * (p1 + p2)).clamp(1e-20, 1).log()
    kl = F.kl_div(log_m, p1.clamp(1e-20, 1), reduction="batchmean")
    return 0.5 * (kl + F.kl_div(log_m, p2.clamp(1e-20, 1), reduction="batchmean"))


def nt_xent(views: list[torch.Tensor], labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Label-supervised NT-Xent over the stacked views (``nt_xent_loss``; pytorch_metric_learning
    ``NTXentLoss._compute_loss`` with its mean over positive pairs).

    Rows: the L2-normalised views stacked (M*B rows), labels repeated; s_ij = cos_ij / temperature.
    For every positive pair (i, j), i != j with equal labels, the loss is
    ``-log(e^{s_ij} / (e^{s_ij} + sum_{n: label_n != label_i} e^{s_in}) + tiny)`` computed with the
    max of s_ij and the anchor's negatives subtracted; the mean over positive pairs. Zero when the
    batch has no positive or no negative pair."""
    x = F.normalize(torch.cat([v.to(torch.promote_types(v.dtype, torch.float32)) for v in views]), dim=1)
    lab = labels.repeat(len(views))
    sim = x @ x.t() / temperature
    same = lab[:, None] == lab[None, :]
    eye = torch.eye(len(lab), dtype=torch.bool, device=x.device)
    pos, neg = same & ~eye, ~same
    if not pos.any() or not neg.any():
        return sim.sum() * 0.0
    a, p = pos.nonzero(as_tuple=True)
    neg_sim = sim[a].masked_fill(~neg[a], float("-inf"))
    pos_sim = sim[a, p][:, None]
    max_val = torch.maximum(pos_sim, neg_sim.max(dim=1, keepdim=True).values).detach()
    numerator = torch.exp(pos_sim - max_val).squeeze(1)
    denominator = torch.exp(neg_sim - max_val).sum(dim=1) + numerator
    return -torch.log(numerator / denominator + torch.finfo(sim.dtype).tiny).mean()
