"""``cggm``: Classifier-guided Gradient Modulation.

Guo, Jin, Chen, Zhao, "Classifier-guided Gradient Modulation for Enhanced Multimodal Learning",
NeurIPS 2024 (arXiv 2411.01409). Official code: zrguo/CGGM @ 21e428c (``src/foodtrain.py:64-135``
and ``src/msatrain.py:56-127`` ``train``; ``src/eval_metrics.py:165-173`` ``cal_cos``;
``models/msamodel.py:77-94`` ``Classifier``; ``run/*_run.py`` for the settings).

A guidance classifier C_m on the detached features of each modality is trained with its own
optimiser. Its batch accuracy gain d_m = acc_m - acc_prev_m gives the magnitude coefficient

    B_m = (S - d_m) / S,   S = sum_j d_j + eps                         (``foodtrain.py:110-118``)

and every gradient of encoder m is multiplied by rho * B_m. The direction term

    L_gm = (sum_m |B_m| - sum_m B_m cos(vec W^cls_m, vec W^fus_m)) / M

(cosines of the current *weights*, as ``cal_cos`` receives the output layers' parameters) is built
at step t and added, times lambda, to the fused loss of step t+1, where its gradient reaches only
the fused head (the code keeps the old graph; recomputing the cosine from the stored copies with
the fused block as a fresh leaf gives the same gradient). Then the classifier step, the gradient
norm clip of the encoders and fused head (``--clip`` 0.8) and the main step. ``acc_prev`` and the
stored term persist across epochs and are part of the method state, so a resumed run continues the
same coefficients. The guidance classifiers are not used by ``predict``.

Benchmark adaptations and flags:
- ``direction_target = "block"``: the official fused ``out_layer`` has one weight of the
  classifiers' shape; the concat head has one column block W_m per modality, and C_m is compared
  with its own block.
- ``cls_arch``: ``linear`` (default, [guess]: one ``Linear(d_m, K)``) or ``official_mlp``
  (``Classifier`` without its transformer: ``proj1`` twice, ReLU after the second, ``out_layer``).
- ``direction_on``: ``weights`` (code) or ``grads`` (the paper's wording: the same term on the
  gradients of C_m's output layer and of W_m after the backward passes).
- ``l_gm_timing``: ``next_step`` (code) or ``same_step`` (ablation: the term's gradient added in
  the step that builds it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.methods.base import Method, Optimizers, build_optimizer, build_scheduler, check_choices
from mmbench.methods.heads import ConcatHead
from mmbench.methods.registry import register_method

_CHOICES = {
    "cls_optimizer": ("adam", "adamw"),
    "cls_arch": ("linear", "official_mlp"),
    "direction_on": ("weights", "grads"),
    "l_gm_timing": ("next_step", "same_step"),
}


@dataclass
class CGGMHyper:
    rho: float = 1.3  # [code] run/*_run.py --rou
    lam: float = 0.2  # [code] run/mosi_run.py --lamda 0.2 (Food-101: 0.05)
    cls_lr: float = 5e-4  # [code] --cls_lr
    cls_optimizer: str = "adam"  # [code] msatrain.py:21 Adam (foodtrain.py:21 AdamW)
    cls_wd: float = 0.0  # [code] msatrain.py:21 (foodtrain.py: 3e-3)
    clip: float = 0.8  # [code] --clip 0.8, clip_grad_norm_ of the main model
    eps: float = 1e-8  # [code] foodtrain.py:115
    cls_arch: str = "linear"  # [guess] one Linear(d_m, K); "official_mlp": Classifier without its transformer
    direction_on: str = "weights"  # [code] cal_cos on the output layers' weights; "grads": their gradients
    l_gm_timing: str = "next_step"  # [code] built at step t, in the loss of step t+1; "same_step": ablation


# ----------------------------------------------------------------------------- the rule
def magnitude_coefficients(acc: torch.Tensor, acc_prev: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """B_m = (S - d_m) / S with d = acc - acc_prev and S = sum d + eps (no guard: with opposite
    changes S ~ eps and B explodes; the official code relies on the gradient clip)."""
    d = acc - acc_prev
    s = d.sum() + eps
    return (s - d) / s


def direction_loss(b: torch.Tensor, w_cls: list[torch.Tensor], w_fus: list[torch.Tensor]) -> torch.Tensor:
    """L_gm = (sum_m |B_m| - sum_m B_m cos(vec W^cls_m, vec W^fus_m)) / M (``cal_cos``)."""
    cos = torch.stack(
        [F.cosine_similarity(u.reshape(1, -1), v.reshape(1, -1))[0] for u, v in zip(w_cls, w_fus)]
    )
    return (b.abs().sum() - (b * cos).sum()) / len(w_cls)


def direction_grads(b, w_cls, w_fus, lam: float) -> list[torch.Tensor]:
    """d(lam L_gm)/d W^fus_m at the given tensors, with B and W^cls held constant: the gradient the
    official code's retained graph adds to the fused weights one step later."""
    leaves = [v.detach().clone().requires_grad_(True) for v in w_fus]
    with torch.enable_grad():
        loss = lam * direction_loss(b.detach(), [u.detach() for u in w_cls], leaves)
        return list(torch.autograd.grad(loss, leaves))


# ----------------------------------------------------------------------------- heads
class GuidanceClassifier(nn.Module):
    """C_m: ``Linear(d_m, K)``, or (``official_mlp``) ``proj1`` applied twice with a ReLU after the
    second, then ``out_layer`` (``models/msamodel.py`` ``Classifier`` without the transformer)."""

    def __init__(self, dim: int, num_classes: int, arch: str):
        super().__init__()
        self.proj1 = nn.Linear(dim, dim) if arch == "official_mlp" else None
        self.out_layer = nn.Linear(dim, num_classes)

    def forward(self, x):
        if self.proj1 is not None:
            x = F.relu(self.proj1(self.proj1(x)))
        return self.out_layer(x)


class CGGMHeads(nn.Module):
    """The concat head (``fused``; split logits per modality as ``joint``) and the guidance
    classifiers (``guidance[m]``, trained on detached features, unused by ``predict``)."""

    def __init__(self, dims: dict[str, int], num_classes: int, modalities, arch: str):
        super().__init__()
        self.fused = ConcatHead([dims[m] for m in modalities], num_classes, modalities)
        self.guidance = nn.ModuleDict({m: GuidanceClassifier(dims[m], num_classes, arch) for m in modalities})

    def forward(self, feats):
        return self.fused(feats)

    def fused_blocks(self) -> list[torch.Tensor]:
        """W^fus_m, the K x d_m column blocks of the fused weight (views)."""
        return list(torch.split(self.fused.fc.weight, self.fused.dims, dim=1))


# ----------------------------------------------------------------------------- the method
@register_method
class CGGM(Method):
    name = "cggm"
    settings_toml = "cggm.toml"
    paper = '"Classifier-guided Gradient Modulation for Enhanced Multimodal Learning", NeurIPS 2024'
    Hyper = CGGMHyper

    def __init__(self, *args):
        super().__init__(*args)
        self.acc_prev = torch.zeros(len(self.modalities))
        self.gm = None  # (B, [W^cls_m], [W^fus_m]) of the previous step, or None

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        check_choices(params, _CHOICES)

    def build_heads(self, feature_dims, num_classes):
        return CGGMHeads(feature_dims, num_classes, self.modalities, self.hp.cls_arch)

    def configure_optimizers(self, model, train_cfg):
        """``main`` (encoders + fused head, ``train.optimizer``, with the schedule) and ``cls`` (the
        guidance classifiers: Adam/AdamW at ``cls_lr``, ``cls_wd``; no scheduler)."""
        main = build_optimizer(self.main_parameters(model), train_cfg)
        opt_cls = torch.optim.Adam if self.hp.cls_optimizer == "adam" else torch.optim.AdamW
        cls = opt_cls(model.heads.guidance.parameters(), lr=self.hp.cls_lr, weight_decay=self.hp.cls_wd)
        sched = build_scheduler(main, train_cfg)
        return Optimizers({"main": main, "cls": cls}, {"main": sched} if sched is not None else {})

    def main_parameters(self, model) -> list[nn.Parameter]:
        return [p for m in self.modalities for p in model.encoders[m].parameters()] + list(
            model.heads.fused.parameters()
        )

    def _add_direction_grad(self, model, b, w_cls, w_fus) -> None:
        grads = direction_grads(b, w_cls, w_fus, self.hp.lam)
        fc = model.heads.fused.fc
        add = torch.cat([g.to(fc.weight.dtype) for g in grads], dim=1)
        fc.weight.grad = add if fc.weight.grad is None else fc.weight.grad + add

    def training_step(self, model, batch, ctx):
        """Steps 1-10 of ``foodtrain.py`` ``train``: fused CE (+ last step's direction term), the
        classifiers' CE on detached features, B from their accuracy gains, encoder gradients times
        rho B_m, classifier step, clip, main step."""
        y, hp, heads = batch["label"], self.hp, model.heads
        with ctx.autocast():
            feats = self.encode(model, batch)
            logits = heads(feats)
        loss = F.cross_entropy(logits["fusion"].float(), y)
        opt = ctx.optimizers
        opt["main"].zero_grad()
        loss.backward()
        if self.gm is not None:
            self._add_direction_grad(model, *self.gm)
        c = {m: heads.guidance[m](feats[m].detach().float()) for m in self.modalities}
        opt["cls"].zero_grad()
        loss_cls = sum(F.cross_entropy(c[m], y) for m in self.modalities)
        loss_cls.backward()
        acc = torch.stack([(c[m].detach().argmax(1) == y).float().mean() for m in self.modalities])
        b = magnitude_coefficients(acc, self.acc_prev.to(acc.device), hp.eps)
        self.acc_prev = acc
        w_cls, w_fus = self._direction_tensors(heads)
        l_gm = direction_loss(b, w_cls, w_fus)
        if hp.l_gm_timing == "same_step":
            self._add_direction_grad(model, b, w_cls, w_fus)
            self.gm = None
        else:
            self.gm = (b, w_cls, w_fus)
        for j, m in enumerate(self.modalities):
            for p in model.encoders[m].parameters():
                if p.grad is not None:
                    p.grad.mul_((hp.rho * b[j]).to(p.grad.dtype))
        opt["cls"].step()
        torch.nn.utils.clip_grad_norm_(self.main_parameters(model), hp.clip)
        opt["main"].step()
        out = {"loss": loss.detach(), "loss_cls": loss_cls.detach(), "l_gm": l_gm.detach()}
        for j, m in enumerate(self.modalities):
            ctx.log(f"B/{m}", b[j])
            ctx.log(f"cls_acc/{m}", acc[j])
        return out

    def _direction_tensors(self, heads) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Detached copies of (W^cls_m, W^fus_m): the weights, or (``direction_on="grads"``) their
        gradients after this step's backward passes."""
        cls_w = [heads.guidance[m].out_layer.weight for m in self.modalities]
        fus_w = heads.fused_blocks()
        if self.hp.direction_on == "grads":
            fc_grad = heads.fused.fc.weight.grad
            fus_g = torch.split(
                fc_grad if fc_grad is not None else torch.zeros_like(heads.fused.fc.weight),
                heads.fused.dims,
                dim=1,
            )
            cls_w = [w.grad if w.grad is not None else torch.zeros_like(w) for w in cls_w]
            fus_w = list(fus_g)
        return [w.detach().clone() for w in cls_w], [w.detach().clone() for w in fus_w]

    # ------------------------------------------------------------------ state
    def state_dict(self):
        gm = None
        if self.gm is not None:
            b, w_cls, w_fus = self.gm
            gm = {"B": b.cpu(), "w_cls": [w.cpu() for w in w_cls], "w_fus": [w.cpu() for w in w_fus]}
        return {"acc_prev": self.acc_prev.cpu(), "gm": gm}

    def load_state_dict(self, state):
        self.acc_prev = state["acc_prev"]
        gm = state.get("gm")
        self.gm = None if gm is None else (gm["B"], gm["w_cls"], gm["w_fus"])

    def on_epoch_start(self, ctx):
        """Tensors restored on the CPU follow the run's device (no reset: they persist)."""
        self.acc_prev = self.acc_prev.to(ctx.device)
        if self.gm is not None:
            b, w_cls, w_fus = self.gm
            self.gm = (b.to(ctx.device), [w.to(ctx.device) for w in w_cls], [w.to(ctx.device) for w in w_fus])
