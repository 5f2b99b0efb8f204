"""``di_mml``: Detached and Interactive Multimodal Learning (specs/methods/di_mml.md).

Fan, Xu, Wang, Liu, Guo, "Detached and Interactive Multimodal Learning", ACM MM 2024
(arXiv 2407.19514). Official code fanyunfeng-bit/DI-MML, commit
83b9b7acc47ac9f1666e72ed984eacd18cfd3d5c (``main_CFT.py`` stage 1, ``main_CFT_stage2.py`` stage 2,
``loss/contrast_loss.py``).

Stage 1, epochs 0 .. E1 - 1 (``main_CFT.py:54-105``): each encoder learns from its own head h_m,
a head g shared by the modalities puts their features in one space, and from epoch e_c the
dimension-decoupled unidirectional contrastive loss (DUC, ``contrast_loss.py:9-34``) pulls each
modality toward the other's detached features on the dimensions only the other resolves:

    L1 = CE(h_a(phi^a)) + CE(h_v(phi^v)) + w [CE(g(phi^a)) + CE(g(phi^v))] + 1[e >= e_c] L_DUC

The dimension sets S_a = E^a \\ E^v, S_v = E^v \\ E^a are computed once, at the start of epoch e_c
(``main_CFT.py:154-210``, ``318-320``), from one eval-mode pass over the training set
(``ctx.feature_pass``): a dimension is effective when its one-dimensional nearest-class-centre
rule is right more often than the mean over dimensions (``effective_dims``).

Stage 2, epochs E1 .. E - 1 (``main_CFT_stage2.py:57-121``): encoders and own heads frozen (eval
mode, no gradient; ``train_mode``), a fresh optimiser (``fresh_optimizer``) trains the concat
fusion head f alone on CE(f([phi^a; phi^v])). Inference (``main_CFT_stage2.py:176-186``): per
sample, the logits of (h_a, h_v, f) weighted by softmax over heads of their max-probabilities / T
(``certainty_fusion``). Stage-1 epochs are not selectable (no trained fusion head yet).

Flags: ``duc_dims = "every_epoch"`` (recompute the sets at each epoch from e_c; [guess]),
``fusion_heads = "own"`` or ``stage2 = false`` (no stage 2: the own heads' certainty fusion,
every epoch selectable; [guess]), ``proj_dim`` (a projection before the shared head for unequal
feature sizes; [guess]). Two modalities only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmbench.methods.base import Method, check_choices, fresh_optimizer, single_optimizer
from mmbench.methods.heads import shared_head_inputs, xavier_linear
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError

_CHOICES = {"duc_dims": ("once", "every_epoch"), "fusion_heads": ("own+fusion", "own")}


@dataclass
class DIMMLHyper:
    weight: float = 1.0  # [code] main_CFT.py:44 weight of the shared-head CE terms
    tau: float = 50.0  # [code] README CREMA-D --tau 50
    fusion_T: float = 1.0  # [code] README CREMA-D stage 2 --T 1
    duc_start_epoch: int = 20  # [code] main_CFT.py:93,318
    stage2_epochs: int = 20  # [code] main_CFT_stage2.py:29
    stage2_lr_ratio: float = 1.0  # [code] both stages at lr 1e-3
    duc_dims: str = "once"  # [code] computed once at e_c; "every_epoch" [guess]
    fusion_heads: str = "own+fusion"  # [code] h_a, h_v and f; "own" = no stage 2 [guess]
    stage2: bool = True  # [code]
    proj_dim: int | None = None  # [guess] Linear(d_m, proj_dim) before the shared head if sizes differ


# --------------------------------------------------------------------------- the algorithm
def effective_dims(feats: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Boolean (d,) mask E^m (``main_CFT.py:154-210``): class centres c_k = mean of the features
    of class k (absent classes skipped), hit_{i,d} = [argmin_k |phi_{i,d} - c_{k,d}| = y_i] (first
    index on ties), r_d = mean_i hit_{i,d}; E = {d : r_d > mean_d r_d}."""
    present = [k for k in range(num_classes) if bool((labels == k).any())]
    centres = torch.stack([feats[labels == k].mean(0) for k in present])  # (K', d)
    nearest = (feats[:, None, :] - centres[None]).abs().argmin(1)  # (N, d) index into present
    classes = torch.tensor(present, dtype=labels.dtype)[nearest]
    rate = (classes == labels[:, None]).double().mean(0)
    return rate > rate.mean()


def duc_sets(feats: dict[str, torch.Tensor], labels, num_classes: int, a: str, v: str) -> tuple[list, list]:
    """(S_a, S_v) = (E^a minus E^v, E^v minus E^a) as sorted dimension lists."""
    ea, ev = (effective_dims(feats[m], labels, num_classes) for m in (a, v))
    return torch.nonzero(ea & ~ev).flatten().tolist(), torch.nonzero(ev & ~ea).flatten().tolist()


def duc_loss(pa: torch.Tensor, pv: torch.Tensor, s_a, s_v, tau: float) -> torch.Tensor:
    """L_DUC (``contrast_loss.py:9-34``, as a log-sum-exp): the visual query against the detached
    audio keys on S_a plus the audio query against the detached visual keys on S_v; the positive
    of row i is column i."""
    target = torch.arange(pa.shape[0], device=pa.device)
    sa = torch.as_tensor(s_a, dtype=torch.long, device=pa.device)
    sv = torch.as_tensor(s_v, dtype=torch.long, device=pa.device)
    l_v = F.cross_entropy(pv[:, sa] @ pa[:, sa].detach().t() / tau, target)
    l_a = F.cross_entropy(pa[:, sv] @ pv[:, sv].detach().t() / tau, target)
    return l_v + l_a


def certainty_fusion(logits: list[torch.Tensor], T: float = 1.0) -> torch.Tensor:
    """sum_h w_h z_h, w = softmax over heads of (max_k softmax(z_h)_k / T), per sample
    (``main_CFT_stage2.py:176-186``)."""
    z = torch.stack(logits)  # (H, B, K)
    c = F.softmax(z, dim=2).amax(2)  # (H, B)
    w = F.softmax(c / T, dim=0)
    return (w[..., None] * z).sum(0)


class DIHeads(nn.Module):
    """Own heads h_m (PyTorch default init), the shared head g (with optional projections), the
    stage-2 fusion head f (xavier-normal, zero bias) and whether f is in use (a buffer, so a
    checkpoint's weights alone define its predictions)."""

    def __init__(self, dims, num_classes, modalities, proj_dim):
        super().__init__()
        self.modalities = tuple(modalities)
        self.own = nn.ModuleDict({m: nn.Linear(dims[m], num_classes) for m in self.modalities})
        self.proj, width = shared_head_inputs(dims, self.modalities, proj_dim, "di_mml")
        self.shared = nn.Linear(width, num_classes)
        self.fusion = xavier_linear(sum(dims[m] for m in self.modalities), num_classes)
        self.register_buffer("fusion_on", torch.zeros((), dtype=torch.bool))

    def shared_logits(self, m, feat):
        return self.shared(self.proj[m](feat) if self.proj is not None else feat)

    def forward(self, feats):
        return {m: self.own[m](feats[m]) for m in self.modalities}


# --------------------------------------------------------------------------- the method
@register_method
class DIMML(Method):
    name = "di_mml"
    settings_toml = "di_mml.toml"
    Hyper = DIMMLHyper
    max_modalities = 2
    modality_logits = "own Linear(d_m, K) head, trained on its modality alone"
    fusion_logits = "certainty-weighted sum of the own heads' and the concat fusion head's logits"
    conformance_overrides = {"epochs": 4, "method.duc_start_epoch": 1, "method.stage2_epochs": 2}

    def __init__(self, hyper, modalities, num_classes, feature_dims):
        super().__init__(hyper, modalities, num_classes, feature_dims)
        self.s_a: list[int] | None = None
        self.s_v: list[int] | None = None
        self.last_epoch: int | None = None

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        if len(spec.modalities) != 2:
            raise ConfigError(
                f"di_mml supports exactly 2 modalities; {spec.name} has {len(spec.modalities)}: "
                f"{', '.join(spec.modalities)}"
            )
        check_choices(params, _CHOICES)

    @classmethod
    def validate_config(cls, cfg, spec):
        """Refuse, before anything is written, a budget that leaves stage 1 no epoch."""
        super().validate_config(cfg, spec)
        params = cfg.method_params
        with_stage2 = params.get("stage2") and params.get("fusion_heads", "own+fusion") == "own+fusion"
        if with_stage2 and cfg.train.epochs - int(params.get("stage2_epochs", 0)) < 1:
            raise ConfigError(
                f"di_mml: method.stage2_epochs={params.get('stage2_epochs')} leaves no stage-1 epoch of "
                f"epochs={cfg.train.epochs}; raise epochs or lower method.stage2_epochs"
            )

    def with_stage2(self) -> bool:
        return bool(self.hp.stage2) and self.hp.fusion_heads == "own+fusion"

    def stage1_epochs(self, epochs: int) -> int:
        """E1 = E - stage2_epochs (the shared budget covers both stages), or E without stage 2."""
        return epochs - int(self.hp.stage2_epochs) if self.with_stage2() else epochs

    def build_heads(self, feature_dims, num_classes):
        if len(self.modalities) != 2:
            raise ValueError(
                f"di_mml supports exactly 2 modalities; got {len(self.modalities)}: {', '.join(self.modalities)}"
            )
        return DIHeads(feature_dims, num_classes, self.modalities, self.hp.proj_dim)

    def stage1_params(self, model):
        heads = model.heads
        params = [p for m in self.modalities for p in model.encoders[m].parameters()]
        params += list(heads.own.parameters()) + list(heads.shared.parameters())
        return params + (list(heads.proj.parameters()) if heads.proj is not None else [])

    def stage2_optimizers(self, model, train_cfg):
        return fresh_optimizer(
            model.heads.fusion.parameters(), train_cfg, lr=train_cfg.lr * self.hp.stage2_lr_ratio
        )

    def configure_optimizers(self, model, train_cfg):
        """Stage 1's optimiser (shared schedule), or on a resume inside stage 2 the structure of
        stage 2's fresh optimiser (its state is restored afterwards)."""
        if self.stage1_epochs(train_cfg.epochs) < 1:
            raise ConfigError(
                f"di_mml: method.stage2_epochs={self.hp.stage2_epochs} leaves no stage-1 epoch of "
                f"epochs={train_cfg.epochs}"
            )
        if self.last_epoch is not None and self.last_epoch + 1 > self.stage1_epochs(train_cfg.epochs):
            return self.stage2_optimizers(model, train_cfg)
        return single_optimizer(self.stage1_params(model), train_cfg)

    # ------------------------------------------------------------------ hooks
    def in_stage2(self, ctx) -> bool:
        return ctx.epoch >= self.stage1_epochs(ctx.epochs)

    def train_mode(self, model, ctx):
        model.train()
        if self.in_stage2(ctx):  # frozen encoders and own heads (BN statistics do not move)
            model.encoders.eval()
            model.heads.own.eval()

    def on_epoch_start(self, ctx):
        e, hp = ctx.epoch, self.hp
        recompute = self.s_a is None or (hp.duc_dims == "every_epoch" and e > hp.duc_start_epoch)
        if not self.in_stage2(ctx) and e >= hp.duc_start_epoch and recompute:
            feats = ctx.feature_pass("train")
            self.s_a, self.s_v = duc_sets(feats, feats["label"], self.num_classes, *self.modalities)
        if self.with_stage2() and e == self.stage1_epochs(ctx.epochs):
            ctx.optimizers = self.stage2_optimizers(ctx.model, ctx.train_cfg)
            ctx.model.heads.fusion_on.fill_(True)
        if self.s_a is not None:
            ctx.log_epoch("duc_dims_a", len(self.s_a))
            ctx.log_epoch("duc_dims_v", len(self.s_v))
        ctx.log_epoch("stage", 2 if self.in_stage2(ctx) else 1)

    def training_step(self, model, batch, ctx):
        a, v = self.modalities
        y = batch["label"]
        heads = model.heads
        if self.in_stage2(ctx):
            with torch.no_grad(), ctx.autocast():
                feats = self.encode(model, batch)
            with ctx.autocast():
                z = heads.fusion(torch.cat([feats[a], feats[v]], 1))
            loss = F.cross_entropy(z.float(), y)
            ctx.optimizers.zero_grad()
            loss.backward()
            ctx.optimizers.step()
            return {"loss": loss.detach(), "loss_fusion": loss.detach()}
        with ctx.autocast():
            feats = self.encode(model, batch)
            own = heads(feats)
            l_own = {m: F.cross_entropy(own[m].float(), y) for m in self.modalities}
            l_shared = {
                m: F.cross_entropy(heads.shared_logits(m, feats[m]).float(), y) for m in self.modalities
            }
            loss = sum(l_own.values()) + self.hp.weight * sum(l_shared.values())
            out = {f"loss_{m}": l_own[m].detach() for m in self.modalities}
            out.update({f"loss_shared_{m}": l_shared[m].detach() for m in self.modalities})
            if ctx.epoch >= self.hp.duc_start_epoch and self.s_a is not None:
                l_duc = duc_loss(feats[a].float(), feats[v].float(), self.s_a, self.s_v, self.hp.tau)
                loss = loss + l_duc
                out["loss_duc"] = l_duc.detach()
        ctx.optimizers.zero_grad()
        loss.backward()
        ctx.optimizers.step()
        out["loss"] = loss.detach()
        out.update({f"acc_{m}": (own[m].detach().argmax(1) == y).float().mean() for m in self.modalities})
        return out

    def on_epoch_end(self, ctx):
        # stage-1 epochs have no trained fusion head: not selectable (unless there is no stage 2)
        ctx.selectable = self.in_stage2(ctx) or not self.with_stage2()
        self.last_epoch = ctx.epoch

    @torch.no_grad()
    def predict(self, model, batch):
        feats = self.encode(model, batch)
        heads = model.heads
        own = heads(feats)
        logits = [own[m] for m in self.modalities]
        if bool(heads.fusion_on):
            logits.append(heads.fusion(torch.cat([feats[m] for m in self.modalities], 1)))
        return {"fusion": certainty_fusion([z.float() for z in logits], self.hp.fusion_T), **own}

    def state_dict(self):
        return {"s_a": self.s_a, "s_v": self.s_v, "last_epoch": self.last_epoch}

    def load_state_dict(self, state):
        self.s_a, self.s_v, self.last_epoch = state["s_a"], state["s_v"], state["last_epoch"]
