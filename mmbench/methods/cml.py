"""``cml``: Calibrating Multimodal Learning (specs/methods/cml.md).

Ma, Zhang, Zhang, Wu, Fu, Zhou, Hu, "Calibrating Multimodal Learning", ICML 2023. Official code
QingyangZhang/CML @ 9d2496e6 (``miwae/train.py``: ``get_multi_mask`` lines 67-86, the loss at lines
286-304; ``cpm/CPM_Nets.py:121-123``). The model is trained on the full input and on nested inputs
with modalities removed, and a hinge penalises every sample whose confidence (largest softmax
probability) rises when a modality is taken away:

1. a removal order pi_i per sample, a random permutation of the M modalities (``get_multi_mask``,
   fresh every step); input k = 0..M-1 removes the first k modalities of pi_i;
2. nested logits from one encoder pass: z^(k)_i = b + sum over the kept m of W_m phi^m_i (a removed
   modality contributes nothing; the bias is kept whole). The official code imputes removed tabular
   views (MIWAE) or works on latent codes (CPM-Nets); dropping the logit contribution is the
   late-fusion counterpart;
3. for each pair (k, k + 1), ``sign_rule = "miwae"`` (``miwae/train.py:294-302``):
   R_k = sum_i relu((c^(k+1)_i - c^(k)_i) [p^(k)_i = y_i] - eps)
       + sum_i relu((c^(k+1)_i - sg(c^(k)_i)) [p^(k)_i != y_i and p^(k+1)_i != y_i] - eps);
   ``"cpm"`` (``CPM_Nets.py:121-123``): relu((c^(k+1) - c^(k)) s_i - eps) with s_i = not(p^(k+1)_i = y_i
   and p^(k)_i != y_i); ``"bmm"`` (BalanceBenchmark ``CML_trainer.py:19-22``): relu of the batch sum;
4. L = (1/M) sum_k CE(z^(k), y) + lam sum_k R_k (``lam`` = the README's ``--beta 10`` / 100).

One forward of the encoders, one backward, one step. The removal orders come from the run's
method-owned stream ``"cml/order"`` (``"cml/order-epoch"`` for ``order = "per_epoch"``), so a
resumed run draws the same orders. Any number of modalities.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mmbench.methods.base import Method, check_choices, modality_accuracies
from mmbench.methods.registry import register_method

_CHOICES = {
    "sign_rule": ("miwae", "cpm", "bmm"),
    "reduction": ("sum", "mean"),
    "order": ("per_sample", "per_epoch"),
}


@dataclass
class CMLHyper:
    lam: float = 0.1  # [code] readme --beta 10, used as beta / 100 (miwae/train.py:304)
    eps: float = 0.0  # [code] miwae/train.py:137 margin
    sign_rule: str = "miwae"  # [code] "miwae" (readme) | "cpm" (CPM_Nets.py) | "bmm" (BalanceBenchmark)
    reduction: str = "sum"  # [code] .sum() over the samples; "mean" divides each R_k by B
    cls_on_partial: bool = True  # [code] miwae/train.py:286, 292: CE averaged over every nested input
    order: str = "per_sample"  # [code] get_multi_mask; "per_epoch": one order per epoch (BalanceBenchmark)


# --------------------------------------------------------------------------- the algorithm
def removal_orders(batch: int, num_modalities: int, generator: torch.Generator, device) -> torch.Tensor:
    """(B, M) per-sample random permutations of the modality indices (``get_multi_mask``)."""
    return torch.rand(batch, num_modalities, generator=generator, device=device).argsort(dim=1)


def nested_logits(parts: list[torch.Tensor], bias: torch.Tensor, order: torch.Tensor) -> list[torch.Tensor]:
    """[z^(0), ..., z^(M-1)]: z^(k)_i = b + sum of parts[m]_i over the modalities m not among the
    first k of ``order[i]`` (``parts[m] = phi^m W_m^T``)."""
    rank = order.argsort(dim=1)  # rank[i, m] = position of modality m in sample i's removal order
    out = []
    for k in range(len(parts)):
        keep = (rank >= k).to(parts[0].dtype)
        out.append(bias + sum(keep[:, m : m + 1] * p for m, p in enumerate(parts)))
    return out


def rank_penalty(
    z_more: torch.Tensor,
    z_fewer: torch.Tensor,
    y: torch.Tensor,
    sign_rule: str = "miwae",
    eps: float = 0.0,
    reduction: str = "sum",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, per-sample penalised flags) of one pair (more modalities, fewer) (module docstring,
    step 3). Confidence = max softmax probability, prediction = argmax."""
    p_more, p_fewer = F.softmax(z_more.float(), 1), F.softmax(z_fewer.float(), 1)
    c_more, pred_more = p_more.max(1)
    c_fewer, pred_fewer = p_fewer.max(1)
    right_more, right_fewer = pred_more == y, pred_fewer == y
    if sign_rule == "miwae":
        t1 = F.relu((c_fewer - c_more) * right_more.float() - eps)
        both_wrong = (~right_more & ~right_fewer).float()
        t2 = F.relu((c_fewer - c_more.detach()) * both_wrong - eps)
        per = t1 + t2
        r = per.sum()
    elif sign_rule == "cpm":
        s = (~(right_fewer & ~right_more)).float()
        per = F.relu((c_fewer - c_more) * s - eps)
        r = per.sum()
    elif sign_rule == "bmm":
        per = c_fewer - c_more
        r = F.relu(per.sum())
    else:
        raise ValueError(f"unknown sign_rule {sign_rule!r}; choose miwae, cpm or bmm")
    if reduction == "mean":
        r = r / y.numel()
    return r, per.detach() > 0


# --------------------------------------------------------------------------- the method
@register_method
class CML(Method):
    name = "cml"
    settings_toml = "cml.toml"
    Hyper = CMLHyper

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        check_choices(params, _CHOICES)

    def orders(self, batch_size: int, ctx, device) -> torch.Tensor:
        """The removal orders of this step: per sample from ``"cml/order"`` (per global step), or one
        order for the whole epoch from ``"cml/order-epoch"`` (``order = "per_epoch"``)."""
        m = len(self.modalities)
        if self.hp.order == "per_epoch":
            perm = torch.randperm(
                m, generator=ctx.generator("cml/order-epoch", index=ctx.epoch, device="cpu")
            )
            return perm.to(device).expand(batch_size, m)
        return removal_orders(batch_size, m, ctx.generator("cml/order"), device)

    def training_step(self, model, batch, ctx):
        """Spec §3: nested logits from one encoder pass, CE over the nested inputs, the confidence
        ranking penalty of each consecutive pair; one backward, one step."""
        y = batch["label"]
        head = model.heads
        with ctx.autocast():
            feats = self.encode(model, batch)
            blocks = torch.split(head.fc.weight, list(head.dims), dim=1)
            parts = [feats[m] @ w.t() for m, w in zip(self.modalities, blocks)]
            zs = nested_logits(parts, head.fc.bias, self.orders(y.numel(), ctx, y.device))
            zs = [z.float() for z in zs]
            ces = [F.cross_entropy(z, y) for z in zs]
            ce = sum(ces) / len(ces) if self.hp.cls_on_partial else ces[0]
            pairs = [
                rank_penalty(zs[k], zs[k + 1], y, self.hp.sign_rule, self.hp.eps, self.hp.reduction)
                for k in range(len(zs) - 1)
            ]
            rank = sum(r for r, _ in pairs)
            loss = ce + self.hp.lam * rank
        ctx.optimizers.zero_grad()
        loss.backward()
        ctx.optimizers.step()

        with torch.no_grad():
            for k, z in enumerate(zs):
                ctx.log(f"confidence_{k}", F.softmax(z.detach(), 1).max(1).values.mean())
            ctx.log("penalised", torch.stack([flag.float().mean() for _, flag in pairs]).mean())
            split = {
                m: p.detach() + head.fc.bias.detach() / len(parts) for m, p in zip(self.modalities, parts)
            }
        return {
            "loss": loss.detach(),
            "ce": ce.detach(),
            "rank": rank.detach(),
            **modality_accuracies(split, y, self.modalities),
        }
