"""``lfm``: dynamically Learning the modality gap (specs/methods/lfm.md).

Yang, Wan, Jiang, Xu, "Facilitating Multimodal Classification via Dynamically Learning Modality
Gap", NeurIPS 2024. Official code njustkmg/NeurIPS24-LFM, commit
ad44fa09fee471c9267a7cba526b222c54d45493: ``Crema_epoch.py`` (the README's entry point, fitted
schedule), ``Crema_epoch_learnable.py`` (learnable schedule), ``model/AudioVideo.py``.

1. Heads (``AudioVideo.py:54-55``): one ``Linear(d_m, K)`` per modality (xavier-normal, zero bias);
   fused logits z_bar = mean_m z^m (``Crema_epoch.py:70``, ``113-114``).
2. Loss (``Crema_epoch.py:38-45``, ``69-71``): p = softmax(z^a), q = softmax(z^v), m = (p + q) / 2,
   A = 0.5 [KL(m || p) + KL(m || q)] (sum over classes, mean over the batch), and
   L = s (w_ce(e) CE(z_bar, y) + w_al(e) A), s = 2; one backward, one step.
3. Weights, by ``alpha_mode``: ``"fitted"`` (default; ``Crema_epoch.py:47-53``) the degree-5
   polynomial w_ce(e), w_al = 1 - w_ce, unclipped; ``"learnable"`` (``Crema_epoch_learnable.py:55-97``,
   ``246-254``) a hyper-step at every epoch start on 8 fixed held-out training items:
   g = mean over the first parameter tensor of H(L_tot) grad(L_cls), eta halved every 20 epochs,
   w_al = clip(w_al - eta g, 0.05, 0.95); ``"heuristic"`` (first upload, ``Crema_ours.py``
   ``getAlpha_heritic``) w_al = clip(exp(-a e), 0.05, 0.95).

More than two modalities [guess, as BalanceBenchmark]: z_bar is the mean of the M logits and A the
mean of the pairwise terms. Flags: ``align = "js"`` (the textbook Jensen-Shannon, KL arguments the
other way round), ``alpha_epoch = "budget"`` (evaluate the 200-epoch polynomial at e x 200 / E),
``alpha_bn_mode`` (the model's mode during the learnable hyper-step; ``"as_code"`` = train mode at
epoch 0, eval mode afterwards, as the official script leaves it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmbench.methods.base import Method, check_choices, modality_accuracies, to_device
from mmbench.methods.heads import xavier_linear
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError

_CHOICES = {
    "alpha_mode": ("fitted", "learnable", "heuristic"),
    "alpha_epoch": ("raw", "budget"),
    "align": ("mixture_kl", "js"),
    "alpha_bn_mode": ("as_code", "eval", "train"),
}

# Crema_epoch.py:47-53: w_ce(e) = sum_i c_i e^i (fitted on the CREMA-D 200-epoch learnable run)
FITTED_CE = (2.04623704e-01, 3.35472727e-03, 1.22989557e-04, -2.92947416e-06, 2.23835486e-08, -5.39717505e-11)
FITTED_EPOCHS = 200


@dataclass
class LFMHyper:
    alpha_mode: str = "fitted"  # [code] README runs Crema_epoch.py: "fitted" | "learnable" | "heuristic"
    alpha_epoch: str = "raw"  # [code] the raw epoch index; "budget" maps e to e * 200 / E [guess]
    loss_scale: float = 2.0  # [code] Crema_epoch.py:71
    align: str = "mixture_kl"  # [code] 0.5 [KL(m||p) + KL(m||q)]; "js" = textbook JS
    lr_alpha: float = 1e-4  # [code] Crema_epoch_learnable.py:246 (learnable mode)
    alpha_init_ce: float = 0.05  # [code] Crema_epoch_learnable.py:250 (w_ce, w_al) = (0.05, 0.95)
    alpha_batch: int = 16  # [code] Crema_epoch_learnable.py:59-62,217: 16 items held out, first 8 used
    alpha_bn_mode: str = "as_code"  # [code] train mode at epoch 0, eval afterwards (learnable mode)
    heuristic_a: float = 0.3  # [code] first upload getAlpha_heritic exp(-0.3 e)


# --------------------------------------------------------------------------- the algorithm
def fitted_weights(e: float) -> tuple[float, float]:
    """(w_ce, w_al) of ``Crema_epoch.py:47-53`` at 0-indexed epoch ``e`` (not clipped)."""
    w_ce = sum(c * e**i for i, c in enumerate(FITTED_CE))
    return w_ce, 1.0 - w_ce


def heuristic_weights(e: int, a: float = 0.3) -> tuple[float, float]:
    """(w_ce, w_al) of the first upload's ``getAlpha_heritic``: w_al = clip(exp(-a e), .05, .95)."""
    w_al = min(max(math.exp(-a * e), 0.05), 0.95)
    return 1.0 - w_al, w_al


def alignment(za: torch.Tensor, zv: torch.Tensor, kind: str = "mixture_kl") -> torch.Tensor:
    """A of ``Crema_epoch.py:38-45``: 0.5 [KL(m||p) + KL(m||q)], m = (p + q) / 2, summed over
    classes and averaged over the batch; ``kind="js"`` = 0.5 [KL(p||m) + KL(q||m)]."""
    logp, logq = F.log_softmax(za, 1), F.log_softmax(zv, 1)
    p, q = logp.exp(), logq.exp()
    mix = (p + q) / 2
    logm = mix.log()
    if kind == "mixture_kl":
        return 0.5 * ((mix * (logm - logp)).sum(1).mean() + (mix * (logm - logq)).sum(1).mean())
    if kind == "js":
        return 0.5 * ((p * (logp - logm)).sum(1).mean() + (q * (logq - logm)).sum(1).mean())
    raise ValueError(f"unknown align {kind!r}; choose mixture_kl or js")


def mean_alignment(logits: dict[str, torch.Tensor], modalities, kind: str) -> torch.Tensor:
    """A averaged over the unordered modality pairs (one pair for two modalities)."""
    pairs = list(combinations(modalities, 2))
    return sum(alignment(logits[a], logits[b], kind) for a, b in pairs) / len(pairs)


def lfm_terms(logits: dict[str, torch.Tensor], y: torch.Tensor, modalities, kind: str):
    """(CE(z_bar, y), A): CE on the mean of the unimodal logits and the alignment term."""
    zbar = torch.stack([logits[m] for m in modalities]).mean(0)
    return F.cross_entropy(zbar, y), mean_alignment(logits, modalities, kind)


def hypergradient(params: list[torch.Tensor], loss_fn) -> torch.Tensor:
    """g of ``Crema_epoch_learnable.py:55-97``: with (L_cls, L_tot) = ``loss_fn()``, the
    Hessian-vector product H(L_tot) grad(L_cls) over ``params``, averaged over the entries of the
    first tensor."""
    l_cls, l_tot = loss_fn()
    v = torch.autograd.grad(l_cls, params, retain_graph=True, allow_unused=True)
    g_tot = torch.autograd.grad(l_tot, params, create_graph=True, allow_unused=True)
    dot = sum((gt * vi.detach()).sum() for gt, vi in zip(g_tot, v) if gt is not None and vi is not None)
    h0 = torch.autograd.grad(dot, params[0], allow_unused=True)[0]
    return torch.zeros(()) if h0 is None else h0.mean()


class UnimodalHeads(nn.Module):
    """One ``Linear(d_m, K)`` per modality; ``fusion`` = the mean of their logits."""

    def __init__(self, dims: dict[str, int], num_classes: int, modalities):
        super().__init__()
        self.modalities = tuple(modalities)
        self.cls = nn.ModuleDict({m: xavier_linear(dims[m], num_classes) for m in self.modalities})

    def forward(self, feats):
        out = {m: self.cls[m](feats[m]) for m in self.modalities}
        out["fusion"] = torch.stack([out[m] for m in self.modalities]).mean(0)
        return out


# --------------------------------------------------------------------------- the method
@register_method
class LFM(Method):
    name = "lfm"
    settings_toml = "lfm.toml"
    Hyper = LFMHyper
    fusion_logits = "mean of the unimodal heads' logits, (1/M) sum_m z^m"
    modality_logits = "own Linear(d_m, K) head on phi^m"

    def __init__(self, hyper, modalities, num_classes, feature_dims):
        super().__init__(hyper, modalities, num_classes, feature_dims)
        self.w_ce = float(hyper.alpha_init_ce)
        self.w_al = 1.0 - self.w_ce
        self.eta = float(hyper.lr_alpha)
        self.alpha_items: dict | None = None  # the learnable mode's fixed 8 items (one draw)

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        if len(spec.modalities) < 2:
            raise ConfigError(f"lfm needs at least 2 modalities; {spec.name} has {len(spec.modalities)}")
        check_choices(params, _CHOICES)
        if params.get("alpha_mode") == "learnable" and int(params.get("alpha_batch", 16)) < 2:
            raise ConfigError("method.alpha_batch must be at least 2 (its first half is used)")

    def heldout_count(self) -> int:
        """The learnable mode's 16 training items held out of training (``randperm(N)[:16]``)."""
        return int(self.hp.alpha_batch) if self.hp.alpha_mode == "learnable" else 0

    def build_heads(self, feature_dims, num_classes):
        return UnimodalHeads(feature_dims, num_classes, self.modalities)

    # ------------------------------------------------------------------ weights
    def schedule_epoch(self, epoch: int, epochs: int) -> float:
        return epoch * FITTED_EPOCHS / epochs if self.hp.alpha_epoch == "budget" else float(epoch)

    def on_epoch_start(self, ctx):
        e = ctx.epoch
        if self.hp.alpha_mode == "fitted":
            self.w_ce, self.w_al = fitted_weights(self.schedule_epoch(e, ctx.epochs))
        elif self.hp.alpha_mode == "heuristic":
            self.w_ce, self.w_al = heuristic_weights(e, self.hp.heuristic_a)
        else:
            g = self.learnable_step(ctx)
            ctx.log_epoch("alpha_grad", g)
            ctx.log_epoch("eta", self.eta)
        ctx.log_epoch("w_ce", self.w_ce)
        ctx.log_epoch("w_al", self.w_al)

    def learnable_step(self, ctx) -> float:
        """``Crema_epoch_learnable.py:246-254``: g on the fixed items, eta halved at every 20th
        epoch (kept), w_al = clip(w_al - eta g, .05, .95), w_ce = 1 - w_al. fp32, no autocast."""
        model = ctx.model
        if self.alpha_items is None:
            if ctx.heldout_loader is None:
                raise ConfigError("lfm alpha_mode=learnable needs the harness's held-out items")
            first = next(iter(ctx.heldout_loader))
            half = max(1, int(self.hp.alpha_batch) // 2)
            self.alpha_items = {
                k: v[:half].cpu() if isinstance(v, torch.Tensor) else v for k, v in first.items()
            }
        batch = to_device(self.alpha_items, ctx.device)
        mode = self.hp.alpha_bn_mode
        model.train(mode == "train" or (mode == "as_code" and ctx.epoch == 0))
        params = [p for m in self.modalities for p in model.encoders[m].parameters()]
        params += list(model.heads.parameters())
        w_ce, w_al = self.w_ce, self.w_al

        def losses():
            logits = model.heads(self.encode(model, batch))
            ce, al = lfm_terms(logits, batch["label"], self.modalities, self.hp.align)
            return ce, w_ce * ce + w_al * al

        g = float(hypergradient(params, losses))
        model.train()
        model.zero_grad(set_to_none=True)
        if ctx.epoch % 20 == 0 and ctx.epoch != 0:
            self.eta /= 2
        self.w_al = min(max(self.w_al - self.eta * g, 0.05), 0.95)
        self.w_ce = 1.0 - self.w_al
        return g

    # ------------------------------------------------------------------ step
    def training_step(self, model, batch, ctx):
        y = batch["label"]
        with ctx.autocast():
            logits = model.heads(self.encode(model, batch))
            ce, al = lfm_terms({k: v.float() for k, v in logits.items()}, y, self.modalities, self.hp.align)
            loss = self.hp.loss_scale * (self.w_ce * ce + self.w_al * al)
        ctx.optimizers.zero_grad()
        loss.backward()
        ctx.optimizers.step()
        return {
            "loss": loss.detach(),
            "loss_ce": ce.detach(),
            "loss_align": al.detach(),
            **modality_accuracies(logits, y, self.modalities),
        }

    def state_dict(self):
        state = {"w_ce": self.w_ce, "w_al": self.w_al, "eta": self.eta}
        if self.alpha_items is not None:
            state["alpha_items"] = self.alpha_items
        return state

    def load_state_dict(self, state):
        self.w_ce, self.w_al, self.eta = float(state["w_ce"]), float(state["w_al"]), float(state["eta"])
        self.alpha_items = state.get("alpha_items")
