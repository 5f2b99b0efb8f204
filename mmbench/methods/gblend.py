"""``gblend``: Gradient-Blending.

Wang, Tran, Feiszli, "What Makes Training Multi-modal Classification Networks Hard?", CVPR 2020.
The official code (facebookresearch/VMZ, ``c2/lib/models/loss/loss_creator.py``) ships only the
weighted loss with hard-coded weights; the weight estimator was never released (VMZ issue #133),
so the estimator follows the paper (§3.3, Eq. 6-8: w_k proportional to G_k / O_k^2), cross-checked
with pliang279/MultiBench ``training_structures/gradient_blend.py``.

Training loss (one backward)::

    L = w_mm * CE(z^mm, y) + sum_m w_m * CE(z^m, y)

with dedicated unimodal heads ``z^m = head_m(phi^m)`` and the fused head ``z^mm`` on the
concatenation. The weights are re-estimated every ``super_epoch`` epochs on a held-out slice of
the training split (never val, never test), which the harness carves for us
(``heldout_fraction`` -> ``ctx.heldout_loader``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.methods.base import Method, build_optimizer, modality_accuracies, to_device
from mmbench.methods.heads import ConcatHead, xavier_linear
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError

MM = "mm"  # the multimodal branch's name in weights and diagnostics
_FLOOR = 1e-12  # [guess] floor of dO^2 so that a branch with dO = 0 does not give inf/inf = NaN


@dataclass
class GBlendHyper:
    mode: str = "online"  # online | offline | fixed; [paper] online
    super_epoch: int = 10  # n, the estimation window in epochs; [guess] BalanceBenchmark 10
    heldout_frac: float = 0.10  # V' as a stratified slice of train; [guess] MultiBench 0.08
    fused_head: str = "linear"  # linear (same as joint) | mlp (VMZ)
    unimodal_heads: str = "dedicated"  # dedicated (VMZ, MultiBench) | split (BalanceBenchmark)
    estimator: str = "delta"  # delta (paper G/dO^2) | absolute (MultiBench delta=False)
    loss_aggregation: str = "mean"  # mean (per-sample) | batch_sum (BalanceBenchmark)
    fixed_weights: dict = field(default_factory=dict)  # mode fixed: {modality: w, "mm": w}
    mlp_dropout: float = 0.5  # fused_head mlp only; [guess] VMZ's dropout rate is not documented
    head_init: str = "xavier"  # as joint
    # MultiBench's estimator (training_structures/gradient_blend.py) differs in two places, both
    # flags: "eval" = the branch losses in eval mode (mmbench); "train" = MultiBench getloss (:16-44,
    # no .eval(): train mode, no grad)
    loss_mode: str = "eval"
    # 0 = no head fine-tuning (mmbench); MultiBench 25 (:300 finetune_epoch): after each super-epoch
    # a copy of the initial fused head (:345) is trained this many epochs on frozen train features
    # (:381-408, plain SGD at the LR, :350) and gives the fused prediction (:443-444)
    finetune_epochs: int = 0


# ----------------------------------------------------------------------------- the estimator
def aggregate_losses(batch_means: torch.Tensor, batch_sizes: torch.Tensor, how: str) -> torch.Tensor:
    """One loss value from per-batch mean losses (last dim = batches).

    ``"mean"``: the per-sample mean ``sum_b n_b l_b / sum_b n_b`` (paper; independent of the
    number of batches). ``"batch_sum"``: ``sum_b l_b`` (BalanceBenchmark
    ``trainer/GBlending_trainer.py``; it depends on the batch count).
    """
    batch_means = torch.as_tensor(batch_means, dtype=torch.float64)
    batch_sizes = torch.as_tensor(batch_sizes, dtype=torch.float64)
    if how == "mean":
        return (batch_means * batch_sizes).sum(-1) / batch_sizes.sum(-1)
    if how == "batch_sum":
        return batch_means.sum(-1)
    raise ConfigError(f"unknown gblend loss_aggregation {how!r}; choose mean or batch_sum")


def blend_weights(t0, v0, t1, v1, estimator: str = "delta") -> dict[str, torch.Tensor]:
    """Blend weights from per-branch train/held-out losses before (t0, v0) and after (t1, v1)
    the window (paper Eq. 6-8). All inputs are tensors of shape (K,).

    ``"delta"`` (paper): G = V0 - V1, dO = (V1 - T1) - (V0 - T0), raw = |G / dO^2|.
    ``"absolute"`` (MultiBench ``delta = False``): O1 = V1 - T1 (1e-4 if negative), raw = |V1 / O1^2|.
    Returns ``w`` (raw normalised to sum 1), ``raw``, ``gain``, ``overfit`` and
    ``ogr = |dO / G|``.
    """
    t0, v0, t1, v1 = (torch.as_tensor(x, dtype=torch.float64) for x in (t0, v0, t1, v1))
    if estimator == "delta":
        gain = v0 - v1
        overfit = (v1 - t1) - (v0 - t0)
    elif estimator == "absolute":
        gain = v1
        overfit = v1 - t1
        overfit = torch.where(overfit < 0, torch.full_like(overfit, 1e-4), overfit)
    else:
        raise ConfigError(f"unknown gblend estimator {estimator!r}; choose delta or absolute")
    raw = (gain / (overfit * overfit).clamp_min(_FLOOR)).abs()
    total = raw.sum()
    w = raw / total if total > 0 else torch.full_like(raw, 1.0 / raw.numel())
    ogr = (overfit / gain).abs()
    return {"w": w, "raw": raw, "gain": gain, "overfit": overfit, "ogr": ogr}


# ----------------------------------------------------------------------------- heads
class MLPFusedHead(nn.Module):
    """VMZ ``c2/lib/models/audio_visual_model.py`` fused classifier: dropout, FC(D, D/2), ReLU,
    FC(D/2, D/2), ReLU, FC(D/2, K)."""

    def __init__(self, dim: int, num_classes: int, dropout: float, init: str):
        super().__init__()
        half = max(dim // 2, 1)
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            xavier_linear(dim, half, init),
            nn.ReLU(),
            xavier_linear(half, half, init),
            nn.ReLU(),
            xavier_linear(half, num_classes, init),
        )

    def forward(self, x):
        return self.net(x)


class FusedHead(nn.Module):
    """``z^mm = fused(concat(phi))`` in modality order; the fused head takes the feature dict."""

    def __init__(self, modalities, dims, num_classes: int, kind: str, dropout: float, init: str):
        super().__init__()
        self.modalities = tuple(modalities)
        dim = sum(dims)
        if kind == "linear":
            self.fc = xavier_linear(dim, num_classes, init)
        elif kind == "mlp":
            self.fc = MLPFusedHead(dim, num_classes, dropout, init)
        else:
            raise ConfigError(f"unknown gblend fused_head {kind!r}; choose linear or mlp")

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fc(torch.cat([feats[m] for m in self.modalities], dim=1))


class PickHead(nn.Module):
    """A dedicated unimodal head ``z^m = head_m(phi^m)`` that takes the feature dict."""

    def __init__(self, modality: str, fc: nn.Module):
        super().__init__()
        self.modality = modality
        self.fc = fc

    def forward(self, feats):
        return self.fc(feats[self.modality])


class GBlendHeads(nn.Module):
    """Fused head + one dedicated ``Linear(d_m, K)`` per modality (VMZ, MultiBench)."""

    def __init__(self, modalities, feature_dims, num_classes, fused: str, dropout: float, init: str):
        super().__init__()
        self.modalities = tuple(modalities)
        self.fused = FusedHead(
            modalities, [feature_dims[m] for m in modalities], num_classes, fused, dropout, init
        )
        self.unimodal = nn.ModuleDict(
            {m: PickHead(m, xavier_linear(feature_dims[m], num_classes, init)) for m in modalities}
        )

    def forward(self, feats):
        out = {"fusion": self.fused(feats)}
        out.update({m: self.unimodal[m](feats) for m in self.modalities})
        return out


class FusionOf(nn.Module):
    """The fused logits of a ``ConcatHead`` (the whole-model branch of the ``split`` variant)."""

    def __init__(self, head: ConcatHead):
        super().__init__()
        self.head = head

    def forward(self, feats):
        return self.head(feats)["fusion"]


class Branch(nn.Module):
    """An independent copy of what branch k uses: its encoders and its head. Inputs in
    ``zeroed`` are replaced by zeros (the ``split`` variant's unimodal branches)."""

    def __init__(self, encoders: dict[str, nn.Module], head: nn.Module, zeroed=()):
        super().__init__()
        self.encoders = nn.ModuleDict({m: copy.deepcopy(e) for m, e in encoders.items()})
        self.head = copy.deepcopy(head)
        self.zeroed = tuple(zeroed)

    def forward(self, batch):
        feats = {
            m: enc(torch.zeros_like(batch[m]) if m in self.zeroed else batch[m])
            for m, enc in self.encoders.items()
        }
        return self.head(feats)


# ----------------------------------------------------------------------------- the method
@register_method
class GBlend(Method):
    name = "gblend"
    settings_toml = "gblend.toml"
    Hyper = GBlendHyper
    modality_logits = "dedicated unimodal heads head_m(phi^m), trained with the blended loss"
    fusion_logits = "fused head on the concatenation (method.fused_head: linear or mlp)"
    # mmbench.testing.check_method: one-epoch estimation windows, so the kit's two epochs both
    # estimate and its resumed epoch re-estimates after the restart (the presets' 10-epoch window
    # would estimate once, at epoch 0, training 10 epochs of branch copies for a 2-epoch run)
    conformance_overrides: ClassVar[dict] = {"method.super_epoch": 1}

    def __init__(self, hyper, modalities, num_classes, feature_dims):
        super().__init__(hyper, modalities, num_classes, feature_dims)
        self._check(hyper, modalities)
        if hyper.unimodal_heads == "split":
            self.modality_logits = "split of the concat head, W_m phi^m + b/M (BalanceBenchmark)"
        self.branches = tuple(modalities) + (MM,)
        self.weights = self._fixed() if hyper.mode == "fixed" else None
        self._w: torch.Tensor | None = None  # the weights on the run's device
        self.last_estimate: dict | None = None  # branch -> (T0, V0, T1, V1, G, dO, OGR), for history

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        cls._check(cls.make_hyper(params), spec.modalities)

    @staticmethod
    def _check(hp, modalities) -> None:
        choices = {
            "mode": ("online", "offline", "fixed"),
            "fused_head": ("linear", "mlp"),
            "unimodal_heads": ("dedicated", "split"),
            "estimator": ("delta", "absolute"),
            "loss_aggregation": ("mean", "batch_sum"),
            "loss_mode": ("eval", "train"),
        }
        for key, valid in choices.items():
            if getattr(hp, key) not in valid:
                raise ConfigError(f"gblend {key} must be one of {', '.join(valid)}, got {getattr(hp, key)!r}")
        if hp.super_epoch < 1:
            raise ConfigError(f"gblend super_epoch must be >= 1, got {hp.super_epoch}")
        if hp.mode != "fixed" and not 0 < hp.heldout_frac < 1:
            raise ConfigError(f"gblend heldout_frac must be in (0, 1), got {hp.heldout_frac}")
        if hp.mode == "fixed":
            want = set(modalities) | {MM}
            got = set(hp.fixed_weights)
            if (
                got != want
                or any(float(v) < 0 for v in hp.fixed_weights.values())
                or not sum(float(v) for v in hp.fixed_weights.values()) > 0
            ):
                raise ConfigError(
                    "gblend mode=fixed needs method.fixed_weights with one non-negative weight for each of "
                    f'{", ".join(sorted(want))}, e.g. --set "method.fixed_weights={{'
                    + ", ".join(f"'{k}': 0.5" for k in sorted(want))
                    + '}"'
                )
        if hp.finetune_epochs < 0 or (hp.finetune_epochs and hp.unimodal_heads == "split"):
            raise ConfigError("gblend finetune_epochs must be >= 0, and needs unimodal_heads=dedicated")
        if hp.unimodal_heads == "split" and hp.fused_head != "linear":
            raise ConfigError(
                "gblend unimodal_heads=split splits the linear fused head; use fused_head=linear"
            )

    def _fixed(self) -> torch.Tensor:
        w = torch.tensor([float(self.hp.fixed_weights[k]) for k in self.branches], dtype=torch.float64)
        return w / w.sum()

    def heldout_fraction(self) -> float:
        return 0.0 if self.hp.mode == "fixed" else float(self.hp.heldout_frac)

    # ------------------------------------------------------------------ heads
    def build_heads(self, feature_dims, num_classes):
        if self.hp.unimodal_heads == "split":
            return ConcatHead(
                [feature_dims[m] for m in self.modalities],
                num_classes,
                self.modalities,
                init=self.hp.head_init,
            )
        heads = GBlendHeads(
            self.modalities,
            feature_dims,
            num_classes,
            self.hp.fused_head,
            self.hp.mlp_dropout,
            self.hp.head_init,
        )
        if self.hp.finetune_epochs:
            heads.finetuned = copy.deepcopy(heads.fused)  # MultiBench :345, the initial head
            heads.finetuned.requires_grad_(False)  # never in the main optimiser's steps
        return heads

    # ------------------------------------------------------------------ step
    def training_step(self, model, batch, ctx):
        """L = w_mm CE(z^mm, y) + sum_m w_m CE(z^m, y); one backward, one step."""
        y = batch["label"]
        w = self._w if self._w is not None else self.weights.to(ctx.device, torch.float32)
        with ctx.autocast():
            logits = model.heads(self.encode(model, batch))
            losses = torch.stack(
                [F.cross_entropy(logits["fusion" if k == MM else k].float(), y) for k in self.branches]
            )
            loss = (w * losses).sum()
        ctx.optimizers.zero_grad()
        loss.backward()
        ctx.optimizers.step()
        out = {"loss": loss.detach()}
        for k, l_k in zip(self.branches, losses.detach()):
            out[f"loss_{'fusion' if k == MM else k}"] = l_k
        out.update(modality_accuracies(logits, y, self.modalities))
        return out

    # ------------------------------------------------------------------ the online estimate
    def on_epoch_start(self, ctx):
        hp = self.hp
        due = (hp.mode == "online" and ctx.epoch % hp.super_epoch == 0) or (
            hp.mode == "offline" and ctx.epoch == 0
        )
        if due or (self.weights is None and hp.mode != "fixed"):
            self.estimate(ctx)
            ctx.log_epoch("gblend_estimated", True)
        self._w = self.weights.to(ctx.device, torch.float32)
        for k, w in zip(self.branches, self.weights.tolist()):
            ctx.log_epoch(f"blend_w/{'fusion' if k == MM else k}", w)

    def _branch(self, model, k) -> Branch:
        heads = model.heads
        if self.hp.unimodal_heads == "split":
            zeroed = () if k == MM else tuple(m for m in self.modalities if m != k)
            return Branch(dict(model.encoders.items()), FusionOf(heads), zeroed)
        if k == MM:
            return Branch(dict(model.encoders.items()), heads.fused)
        return Branch({k: model.encoders[k]}, heads.unimodal[k])

    @torch.no_grad()
    def _measure(self, branch, loader, ctx) -> float:
        """Mean per-sample CE (or the sum of per-batch means) of a branch, eval mode, no grad."""
        branch.train(self.hp.loss_mode == "train")
        means, sizes = [], []
        for batch in loader:
            batch = to_device(batch, ctx.device)
            with ctx.autocast():
                logits = branch(batch)
            means.append(F.cross_entropy(logits.float(), batch["label"]))
            sizes.append(len(batch["label"]))
        branch.train()
        return float(
            aggregate_losses(torch.stack(means).double().cpu(), torch.tensor(sizes), self.hp.loss_aggregation)
        )

    def _train(self, branch, opt, ctx, epoch_offset: int) -> None:
        loader = ctx.train_loader
        loader.set_epoch(ctx.epoch + epoch_offset)
        branch.train()
        for batch in loader:
            batch = to_device(batch, ctx.device)
            with ctx.autocast():
                loss = F.cross_entropy(branch(batch).float(), batch["label"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def estimate(self, ctx) -> None:
        """Spec §3: for each branch, an independent copy trained ``super_epoch`` epochs on the
        training data (held-out slice excluded) with a fresh optimiser of the shared type at the
        current LR ([guess]; MultiBench uses the base LR); losses on train and on V' before and
        after; weights from :func:`blend_weights`. One copy alive at a time."""
        if ctx.heldout_loader is None:
            raise ConfigError("gblend needs the harness's held-out slice (heldout_frac > 0)")
        lr = ctx.optimizers.main.param_groups[0]["lr"]
        n = self.hp.super_epoch
        stats = []
        for k in self.branches:
            branch = self._branch(ctx.model, k)
            opt = build_optimizer(branch.parameters(), ctx.train_cfg, lr=lr)
            if self.hp.loss_aggregation == "batch_sum":
                # BalanceBenchmark: the "before" losses are taken after the copy's first epoch,
                # and G = V1 - V0 there (the opposite sign; irrelevant after abs)
                self._train(branch, opt, ctx, 0)
                first = 1
            else:
                first = 0
            t0 = self._measure(branch, ctx.train_loader, ctx)
            v0 = self._measure(branch, ctx.heldout_loader, ctx)
            for j in range(first, n):
                self._train(branch, opt, ctx, j)
            t1 = self._measure(branch, ctx.train_loader, ctx)
            v1 = self._measure(branch, ctx.heldout_loader, ctx)
            stats.append((t0, v0, t1, v1))
            del branch, opt
        ctx.train_loader.set_epoch(ctx.epoch)
        t0, v0, t1, v1 = (torch.tensor(col, dtype=torch.float64) for col in zip(*stats))
        res = blend_weights(t0, v0, t1, v1, self.hp.estimator)
        w = res["w"]
        if not torch.isfinite(w).all():
            raise ConfigError(f"gblend estimate at epoch {ctx.epoch} gave non-finite weights {w.tolist()}")
        self.weights = w
        self.last_estimate = {
            ("fusion" if k == MM else k): {
                "T0": t0[i].item(),
                "V0": v0[i].item(),
                "T1": t1[i].item(),
                "V1": v1[i].item(),
                "G": res["gain"][i].item(),
                "dO": res["overfit"][i].item(),
                "OGR": _finite(res["ogr"][i].item()),
            }
            for i, k in enumerate(self.branches)
        }
        for k, ogr in zip(self.branches, res["ogr"].tolist()):
            ctx.log_epoch(f"ogr/{'fusion' if k == MM else k}", _finite(ogr))
        ctx.log_epoch("gblend_estimate", self.last_estimate)

    # ------------------------------------------------------------------ MultiBench head fine-tuning
    def before_evaluation(self, ctx):
        """``finetune_epochs > 0``: at the end of each super-epoch, train the fine-tuned head on
        the frozen encoders' train features (MultiBench :381-408)."""
        if not self.hp.finetune_epochs or (ctx.epoch + 1) % self.hp.super_epoch:
            return
        head = ctx.model.heads.finetuned
        feats, labels = self._train_features(ctx)
        head.requires_grad_(True)
        lr = ctx.optimizers.main.param_groups[0]["lr"]
        opt = torch.optim.SGD(head.parameters(), lr=lr, weight_decay=ctx.train_cfg.weight_decay)
        gen = torch.Generator().manual_seed(ctx.seed * 100003 + ctx.epoch)
        bs = ctx.train_cfg.batch_size
        head.train()
        for _ in range(self.hp.finetune_epochs):
            order = torch.randperm(len(labels), generator=gen)
            for start in range(0, len(labels), bs):
                idx = order[start : start + bs].to(labels.device)
                loss = F.cross_entropy(head({m: f[idx] for m, f in feats.items()}), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        head.requires_grad_(False)
        ctx.log_epoch("gblend_finetune_loss", float(loss.detach()))

    @torch.no_grad()
    def _train_features(self, ctx):
        """Encoder outputs of the training data (held-out slice excluded), models in train mode
        as MultiBench's feature pass (:383-386)."""
        feats, labels = {m: [] for m in self.modalities}, []
        for batch in ctx.train_loader:
            batch = to_device(batch, ctx.device)
            for m, f in self.encode(ctx.model, batch).items():
                feats[m].append(f.float())
            labels.append(batch["label"])
        ctx.train_loader.set_epoch(ctx.epoch)
        return {m: torch.cat(v) for m, v in feats.items()}, torch.cat(labels)

    # ------------------------------------------------------------------ predict and state
    @torch.no_grad()
    def predict(self, model, batch):
        """``{"fusion": z^mm, m: z^m}`` (dedicated heads; ``split``: W_m phi^m + b/M); with
        ``finetune_epochs``, the fused logits of the fine-tuned head (MultiBench)."""
        feats = self.encode(model, batch)
        out = model.heads(feats)
        if self.hp.finetune_epochs:
            out["fusion"] = model.heads.finetuned(feats)
        return out

    def state_dict(self):
        return {
            "weights": None if self.weights is None else self.weights.tolist(),
            "last_estimate": self.last_estimate,
        }

    def load_state_dict(self, state):
        if state.get("weights") is not None:
            self.weights = torch.tensor(state["weights"], dtype=torch.float64)
        self.last_estimate = state.get("last_estimate")


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
