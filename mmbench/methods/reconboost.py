"""``reconboost``: ReconBoost.

Hua, Xu, Bao, Yang, Huang, "ReconBoost: Boosting Can Achieve Modality Reconcilement", ICML 2024.
Official code: huacong/ReconBoost (``train.py``, ``models/dynamic_net.py``, ``schedule.py``).

Stages alternate between modalities (dataset order, as ``schedule_model``'s fixed mode). In stage
s the learner f_m = head(phi_m) of m = schedule[s mod M] first fits the boosting target for
``epochs_per_stage`` epochs (phase 1, fresh SGD over phi_m and the shared head), joins the
ensemble, then every ensemble learner, the head and the ensemble scale beta are corrected on
``CE(beta * sum_k f_k, y)`` for ``correct_epochs`` epochs (phase 2, fresh SGD). One harness epoch
is one pass over the training data, whatever phase it belongs to, so the epoch budget counts
data passes as for every other method::

    epoch e: s = e // (E1 + E2); phase 1 if e % (E1 + E2) < E1 else 2; m = modalities[s % M]

Only the last epoch of a complete stage with s >= min_stage_for_selection is selectable
(the code keeps its best model only from stage 3 on, evaluated after each stage).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.methods.base import Method, Optimizers, fresh_optimizer
from mmbench.methods.heads import shared_head_inputs, xavier_linear
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError


@dataclass
class ReconBoostHyper:
    w1: float = 5.0  # [code] --weight1 (CREMA-D)
    w2: float = 1.0  # [code] --weight2; lambda = w2 / w1
    alpha_ga: float = 0.5  # [code] --alpha: weight of the gradient-free "memory" MSE term
    epochs_per_stage: int = 4  # [code] --epochs_per_stage (phase 1, E1)
    correct_epochs: int = 4  # [code] --correct_epoch (phase 2, E2)
    stage_lr_decay: float = 0.1  # [code] CREMA-D: lr x 0.1 every 30 stages
    stage_decay_every: int = 30  # [code]; 0 = no stage decay
    beta_init: float = 1.0  # [code] --boost_rate
    learn_beta: bool = True  # [code] boost_rate is an nn.Parameter of the phase-2 optimiser; false: fixed beta
    hidden: int = 256  # [code] dynamic_net.Head: Linear(d, 256) -> ReLU -> Linear(256, K)
    residual_form: str = "true_class"  # [code]; "full_kl" = the paper's CE - lambda KL(q || p)
    ga_forward: bool = True  # [code] runs f_prev forward (no gradient; moves BN statistics)
    aux_forward_mode: str = "train"  # [code] other learners in train mode when computing q
    init_from_unimodal: bool = False  # shared protocol: from scratch; [code] README CREMA-D --use_pretrain
    unimodal_suffix: str = ""  # init_from_unimodal: reference runs unimodal-<m>_<suffix> (their tag)
    min_stage_for_selection: int = 3  # [code] best model kept only from stage 3
    proj_dim: int | None = None  # Linear(d_m, proj_dim) per modality when feature sizes differ [guess]
    head_init: str = "torch"  # [code] dynamic_net.Head uses PyTorch's default initialisation
    # the shared StepLR's factor: "stage" = taken at the stage's first epoch, so the LR changes only
    # between stages as in the code (train.py:445-451); "epoch" = at every epoch (inside stages)
    shared_lr_step: str = "stage"


# ----------------------------------------------------------------------------- losses
def boosting_loss(
    f_m: torch.Tensor,
    f_others: torch.Tensor | None,
    y: torch.Tensor,
    w1: float = 5.0,
    w2: float = 1.0,
    form: str = "true_class",
) -> torch.Tensor:
    """Phase-1 objective of learner m (paper Eq. 6; code ``boosting_loss``), with ``q = softmax(F_{-m})``.

    ``"true_class"`` (code ``boosting_loss``): mean_i -(w1 - w2 q_{i,y_i}) log p_{i,y_i} / K,
    the code's ``-(w1 * target * log p).mean(-1) + (w2 * target * q * log p).mean(-1)``.
    ``"full_kl"`` (paper): CE(f_m, y) - (w2 / w1) KL(q || p).
    ``f_others=None`` (no other learner in the ensemble) means q = onehot(y), i.e. q_y = 1, as
    the code's scalar ``c0`` expanded to one column."""
    logp = F.log_softmax(f_m, dim=1)
    k = f_m.shape[1]
    if f_others is None:
        q = F.one_hot(y, k).to(logp.dtype)
    else:
        q = F.softmax(f_others.detach(), dim=1)
    if form == "true_class":
        q_y = q.gather(1, y[:, None]).squeeze(1)
        logp_y = logp.gather(1, y[:, None]).squeeze(1)
        return (-(w1 - w2 * q_y) * logp_y / k).mean()
    if form == "full_kl":
        kl = (torch.xlogy(q, q) - q * logp).sum(1).mean()
        return F.nll_loss(logp, y) - (w2 / w1) * kl
    raise ConfigError(f"unknown reconboost residual_form {form!r}; choose true_class or full_kl")


# ----------------------------------------------------------------------------- heads
class ReconHeads(nn.Module):
    """The shared MLP head (``common_space=True``), the ensemble scale ``beta``, which learners
    are in the ensemble (``members``, a bool buffer in modality order: like ``DynamicNet.models``
    it is part of the model, so a checkpoint's weights alone define its predictions), and a
    ``Linear(d_m, proj_dim)`` per modality when ``proj_dim`` is set (benchmark adaptation)."""

    def __init__(self, dims, num_classes, modalities, hidden, proj_dim, beta_init, init):
        super().__init__()
        self.modalities = tuple(modalities)
        self.proj, width = shared_head_inputs(dims, self.modalities, proj_dim, "reconboost")
        self.head = nn.Sequential(xavier_linear(width, hidden, init), nn.ReLU(), xavier_linear(hidden, num_classes, init))
        self.beta = nn.Parameter(torch.tensor(float(beta_init)))
        self.register_buffer("members", torch.zeros(len(self.modalities), dtype=torch.bool))

    def ensemble(self) -> list[str]:
        return [m for m, inside in zip(self.modalities, self.members.tolist()) if inside]

    def learner(self, m: str, feat: torch.Tensor) -> torch.Tensor:
        """f_m = head(phi_m) (through the projection if any)."""
        return self.head(self.proj[m](feat) if self.proj is not None else feat)

    def learner_params(self, m: str) -> list[nn.Parameter]:
        return list(self.proj[m].parameters()) if self.proj is not None else []

    def forward(self, feats):
        return {m: self.learner(m, f) for m, f in feats.items()}


# ----------------------------------------------------------------------------- the method
@register_method
class ReconBoost(Method):
    name = "reconboost"
    settings_toml = "reconboost.toml"
    Hyper = ReconBoostHyper
    modality_logits = "learner f_m"
    fusion_logits = "beta * sum of the ensemble's learners f_m"

    def __init__(self, hyper, modalities, num_classes, feature_dims):
        super().__init__(hyper, modalities, num_classes, feature_dims)
        self.ensemble: list[str] = []  # mirror of model.heads.members (no device sync in the step)
        self.last_epoch: int | None = None  # last finished epoch (resume rebuilds its optimiser)

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        if int(params.get("epochs_per_stage", 1)) < 1 or int(params.get("correct_epochs", 0)) < 0:
            raise ConfigError("reconboost needs method.epochs_per_stage >= 1 and method.correct_epochs >= 0")
        if params.get("residual_form") not in ("true_class", "full_kl"):
            raise ConfigError("method.residual_form must be 'true_class' (official code) or 'full_kl' (paper)")
        if params.get("shared_lr_step") not in ("stage", "epoch"):
            raise ConfigError("method.shared_lr_step must be 'stage' (LR changes between stages, as the code) or 'epoch'")
        if params.get("aux_forward_mode") not in ("train", "eval"):
            raise ConfigError("method.aux_forward_mode must be 'train' (official code) or 'eval'")

    # ------------------------------------------------------------------ epoch mapping
    def position(self, epoch: int) -> tuple[int, int, str, int]:
        """(stage s, phase 1|2, modality m = schedule[s mod M], epoch offset inside the stage)."""
        e1, e2 = self.hp.epochs_per_stage, self.hp.correct_epochs
        s, off = divmod(epoch, e1 + e2)
        return s, (1 if off < e1 else 2), self.modalities[s % len(self.modalities)], off

    def num_stages(self, epochs: int) -> int:
        """Complete stages in the epoch budget: E // (E1 + E2)."""
        return epochs // (self.hp.epochs_per_stage + self.hp.correct_epochs)

    def is_selectable(self, epoch: int, epochs: int) -> bool:
        """Last epoch of a complete stage with s >= min(min_stage_for_selection, num_stages - 1)."""
        s, _, _, off = self.position(epoch)
        n = self.num_stages(epochs)
        last = off == self.hp.epochs_per_stage + self.hp.correct_epochs - 1
        return last and s < n and s >= min(self.hp.min_stage_for_selection, n - 1)

    def stage_lr(self, epoch: int, train_cfg) -> float:
        """``train.lr`` x the code's stage decay (``stage_lr_decay ** (s // stage_decay_every)``)
        x the shared schedule's factor (StepLR in ``train.step_at`` order) at the stage's first
        epoch (``shared_lr_step = "stage"``) or at this epoch (``"epoch"``); 1 under
        ``schedule = "constant"``, as ``protocol = "official"`` sets."""
        s = self.position(epoch)[0]
        lr = train_cfg.lr
        if self.hp.stage_decay_every > 0:
            lr *= self.hp.stage_lr_decay ** (s // self.hp.stage_decay_every)
        if train_cfg.schedule.lower() == "step":
            if self.hp.shared_lr_step == "stage":
                epoch = s * (self.hp.epochs_per_stage + self.hp.correct_epochs)
            k = epoch + 1 if train_cfg.step_at == "epoch_start" else epoch
            lr *= train_cfg.gamma ** (k // train_cfg.step_size)
        return lr

    # ------------------------------------------------------------------ heads and optimisers
    def build_heads(self, feature_dims, num_classes):
        hp = self.hp
        heads = ReconHeads(
            feature_dims, num_classes, self.modalities, hp.hidden, hp.proj_dim, hp.beta_init, hp.head_init
        )
        heads.beta.requires_grad_(hp.learn_beta)
        return heads

    def phase_params(self, model, epoch: int) -> list[nn.Parameter]:
        """Phase 1: phi_m (+ its projection) and the shared head (code ``model.parameters()`` with
        ``model.fc = head``). Phase 2: every ensemble learner, the head and beta
        (``DynamicNet.parameters()``)."""
        _, phase, m, _ = self.position(epoch)
        heads = model.heads
        members = [m] if phase == 1 else [k for k in self.modalities if k in self.ensemble]
        params = [p for k in members for p in list(model.encoders[k].parameters()) + heads.learner_params(k)]
        params += list(heads.head.parameters())
        if phase == 2 and self.hp.learn_beta:
            params.append(heads.beta)
        return params

    def fresh_optimizers(self, model, epoch: int, train_cfg) -> Optimizers:
        """A fresh optimiser (momentum buffers reset) for the phase of ``epoch``; no scheduler,
        the LR is set per epoch by ``stage_lr``."""
        return fresh_optimizer(self.phase_params(model, epoch), train_cfg, lr=self.stage_lr(epoch, train_cfg))

    def configure_optimizers(self, model, train_cfg):
        """The optimiser structure of the phase of the last finished epoch (so that a resumed run
        restores its momentum buffers into the right parameters), else of epoch 0."""
        self.ensemble = model.heads.ensemble()
        return self.fresh_optimizers(model, self.last_epoch if self.last_epoch is not None else 0, train_cfg)

    # ------------------------------------------------------------------ hooks
    def init_from_unimodal(self, model, weights):
        """``--use_pretrain`` (``train.py``: ``init_pretrain`` loads each modality's pre-trained
        network, then ``net_ensemble.add`` puts every modality in the ensemble before stage 0):
        encoder m from the unimodal reference run of m; the shared head and the projections stay
        fresh (the official head is built new); every learner starts in the ensemble."""
        for m in self.modalities:
            model.encoders[m].load_state_dict(weights[m]["encoder"])
            model.heads.members[self.modalities.index(m)] = True
        self.ensemble = model.heads.ensemble()

    def on_epoch_start(self, ctx):
        s, phase, m, off = self.position(ctx.epoch)
        if off == 0 or off == self.hp.epochs_per_stage:
            ctx.optimizers = self.fresh_optimizers(ctx.model, ctx.epoch, ctx.train_cfg)
        if phase == 1 and off == self.hp.epochs_per_stage - 1 and m not in self.ensemble:
            # ensemble[m] <- f_m after the last phase-1 epoch (DynamicNet.add). Joining here, before
            # this epoch trains, changes no training step (phase 1 excludes m from q and the phase-1
            # optimiser does not depend on the ensemble) and lets this epoch's evaluation and its
            # checkpoint see the same ensemble.
            self.ensemble.append(m)
            ctx.model.heads.members[self.modalities.index(m)] = True
        lr = self.stage_lr(ctx.epoch, ctx.train_cfg)
        for group in ctx.optimizers.main.param_groups:
            group["lr"] = lr
        ctx.log_epoch("stage", s)
        ctx.log_epoch("phase", phase)
        ctx.log_epoch("modality", m)

    def training_step(self, model, batch, ctx):
        s, phase, m, _ = self.position(ctx.epoch)
        y = batch["label"]
        heads = model.heads
        opt = ctx.optimizers
        if phase == 2:
            with ctx.autocast():
                members = [k for k in self.modalities if k in self.ensemble]
                feats = self.encode(model, batch, members)
                fused = heads.beta * sum(heads.learner(k, feats[k]) for k in members)
            loss = F.cross_entropy(fused.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return {"loss": loss.detach(), "loss_correct": loss.detach()}

        others = [k for k in self.modalities if k in self.ensemble and k != m]
        f_others = None
        with torch.no_grad(), ctx.autocast():
            if others:
                f_others = heads.beta * sum(self._aux_forward(model, k, batch) for k in others)
        with ctx.autocast():
            f_m = heads.learner(m, model.encoders[m](batch[m]))
        f_m = f_m.float()
        loss = boosting_loss(
            f_m, None if f_others is None else f_others.float(), y, self.hp.w1, self.hp.w2, self.hp.residual_form
        )
        out = {"loss_boost": loss.detach()}
        total = loss.detach()
        if self.hp.ga_forward and s > 0:
            prev = self.modalities[(s - 1) % len(self.modalities)]
            with torch.no_grad(), ctx.autocast():
                f_prev = heads.learner(prev, model.encoders[prev](batch[prev])).float()
            ga = F.mse_loss(F.softmax(f_m.detach(), 1), F.softmax(f_prev, 1))  # no gradient (code)
            out["loss_ga"] = ga
            total = total + self.hp.alpha_ga * ga
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        out["loss"] = total
        if f_others is not None:
            ctx.log("q_true", F.softmax(f_others.float(), 1).gather(1, y[:, None]).mean())
        out[f"acc_{m}"] = (f_m.detach().argmax(1) == y).float().mean()
        return out

    def _aux_forward(self, model, k, batch):
        """f_k for q, in train mode (code) or eval mode (``aux_forward_mode="eval"``)."""
        enc = model.encoders[k]
        if self.hp.aux_forward_mode == "eval":
            enc.eval()
            try:
                return model.heads.learner(k, enc(batch[k]))
            finally:
                enc.train()
        return model.heads.learner(k, enc(batch[k]))

    def on_epoch_end(self, ctx):
        ctx.selectable = self.is_selectable(ctx.epoch, ctx.epochs)
        ctx.log_epoch("beta", float(ctx.model.heads.beta.detach()))
        ctx.log_epoch("ensemble", [k for k in self.modalities if k in self.ensemble])
        self.last_epoch = ctx.epoch

    @torch.no_grad()
    def predict(self, model, batch):
        """``{"fusion": beta * sum_{m in ensemble} f_m, m: f_m}`` (zero logits before any learner
        has joined the ensemble)."""
        z = model.heads(self.encode(model, batch))
        members = model.heads.ensemble()
        if members:
            fused = model.heads.beta * sum(z[k] for k in members)
        else:
            fused = torch.zeros_like(z[self.modalities[0]])
        return {"fusion": fused, **z}

    def state_dict(self):
        return {"last_epoch": self.last_epoch}

    def load_state_dict(self, state):
        self.last_epoch = state.get("last_epoch")
