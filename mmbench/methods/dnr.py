"""``dnr``: Diagnosing & Re-learning (specs/methods/dnr.md).

Wei, Li, Feng, Hu, "Diagnosing and Re-learning for Balanced Multimodal Learning", ECCV 2024
(arXiv 2407.09705). Official code GeWu-Lab/Diagnosing_Relearning_ECCV2024, commit
025085ea82ed784c6ab6e5fb1b08bfe498dd0fc7 (``code/ours.py``, ``code/script/ours.sh``).

Training steps are the joint step (one CE on the concat head's fused logits). Between epochs:

1. Diagnosis after 0-indexed epoch e when e > 0, e % ``reinit_epoch`` == 0 and e // ``reinit_epoch``
   <= ``reinit_num`` (``ours.py:418-427``), after that epoch has been evaluated (``ours.py:386``):
   each encoder's features over the train and the validation split (eval mode, no gradient;
   ``ours.py:300-324``; ``ctx.feature_pass``), each (split, modality) scaled to [-1, 1] per feature
   on its own and clustered by k-means with K = number of classes (``ours.py:108-110``), purity
   P = majority-label accuracy of the clusters (``purity``). It runs as the first act of epoch
   e + 1 (``on_epoch_start``), which is the same point of training: epoch e's checkpoint then
   holds the weights its metrics were measured on, and the diagnosis is logged with epoch e + 1.
2. Re-learning (``ours.py:122-127``, ``156-166``): g^m = |P^m_train - P^m_val|, alpha^m =
   tanh(lambda g^m), and every parameter of encoder m is blended toward its initial value,
   theta <- alpha theta_init + (1 - alpha) theta (in place; BN buffers, the optimiser state and the
   fusion head are kept). theta_init is the harness's ``ctx.initial_encoder_state()``.

Flags (spec §5): ``reinit_timing = "before_eval"`` (BalanceBenchmark: blend before the epoch is
evaluated), ``reinit_scope = "conv"`` (blend only conv parameters, the list the code builds and
never uses; [guess]), ``reinit_buffers`` (also blend BN running statistics), ``reset_momentum``
(clear the optimiser state of the blended parameters), ``kmeans_n_init`` (the code leaves
scikit-learn's default: 10 before 1.4, 1 after). Any number of modalities (per-modality diagnosis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from sklearn.cluster import KMeans

from mmbench.methods.base import Method, check_choices
from mmbench.methods.heads import ConcatHead
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError

_CHOICES = {
    "reinit_timing": ("after_eval", "before_eval"),
    "reinit_scope": ("all", "conv"),
    "head_init": ("torch", "xavier"),
}


@dataclass
class DnRHyper:
    move_lambda: float = 3.0  # [code] ours.sh --move_lambda 3
    reinit_epoch: int = 20  # [code] ours.sh --reinit_epoch 20 (90-epoch run)
    reinit_num: int = 3  # [code] ours.sh --reinit_num 3
    kmeans_seed: int = 0  # [code] ours.py:110 random_state=0
    kmeans_n_init: int = 10  # [guess] not passed: scikit-learn's default before 1.4
    head_init: str = "torch"  # [code] ours.py applies no weight_init
    reinit_timing: str = "after_eval"  # [code] evaluate, then diagnose (ours.py:386, 418)
    reinit_scope: str = "all"  # [code] every encoder parameter (ours.py:156-166)
    reinit_buffers: bool = False  # [code] BN running statistics are not blended
    reset_momentum: bool = False  # [code] optimiser state untouched


# --------------------------------------------------------------------------- the algorithm
def minmax_scale(x: np.ndarray) -> np.ndarray:
    """Per feature to [-1, 1] (scikit-learn ``MinMaxScaler(feature_range=(-1, 1))``): a constant
    feature maps to -1."""
    lo, hi = x.min(0), x.max(0)
    rng = hi - lo
    rng[rng == 0] = 1.0
    return (x - lo) / rng * 2.0 - 1.0


def purity(clusters: np.ndarray, labels: np.ndarray) -> float:
    """(1/N) sum over clusters of the count of the cluster's majority label."""
    clusters, labels = np.asarray(clusters), np.asarray(labels)
    total = 0
    for c in np.unique(clusters):
        total += np.bincount(labels[clusters == c]).max()
    return total / len(labels)


def kmeans_purity(feats: np.ndarray, labels: np.ndarray, k: int, seed: int = 0, n_init: int = 10) -> float:
    """Purity of k-means(minmax(feats), K = k, random_state = seed) (``ours.py:99-135``)."""
    x = minmax_scale(np.asarray(feats, dtype=np.float64))
    clusters = KMeans(n_clusters=k, random_state=seed, n_init=n_init).fit_predict(x)
    return purity(clusters, labels)


def relearn_strength(p_train: float, p_val: float, lam: float) -> float:
    """alpha = tanh(lambda |P_train - P_val|) (``ours.py:122-127``)."""
    return math.tanh(lam * abs(p_train - p_val))


@torch.no_grad()
def blend_toward(params, initial, alpha: float) -> None:
    """theta <- alpha theta_init + (1 - alpha) theta, in place (``ours.py:156-166``)."""
    for p, p0 in zip(params, initial):
        p.mul_(1.0 - alpha).add_(p0.to(p.dtype), alpha=alpha)


def is_reinit_epoch(epoch: int, every: int, num: int) -> bool:
    """After 0-indexed ``epoch``: e > 0, e % every == 0, e // every <= num (``ours.py:418-427``)."""
    return epoch > 0 and epoch % every == 0 and epoch // every <= num


# --------------------------------------------------------------------------- the method
@register_method
class DnR(Method):
    name = "dnr"
    settings_toml = "dnr.toml"
    Hyper = DnRHyper
    # the kit's 2 epochs: diagnose after epoch 1 (the resumed half), so theta_init must survive a resume
    conformance_overrides = {"method.reinit_epoch": 1, "epochs": 3}

    def __init__(self, hyper, modalities, num_classes, feature_dims):
        super().__init__(hyper, modalities, num_classes, feature_dims)
        self.last_diagnosis: dict = {}

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        check_choices(params, _CHOICES)
        if int(params.get("reinit_epoch", 20)) < 1:
            raise ConfigError("method.reinit_epoch must be at least 1")

    def needs_val(self) -> bool:
        return True

    def build_heads(self, feature_dims, num_classes):
        return ConcatHead(
            [feature_dims[m] for m in self.modalities], num_classes, self.modalities, init=self.hp.head_init
        )

    # ------------------------------------------------------------------ hooks
    def on_epoch_start(self, ctx):
        """The official order, evaluate epoch e then diagnose and blend (``ours.py:386`` then
        ``418``), as the first act of epoch e + 1: nothing changes the weights in between, and
        epoch e's checkpoint (and ``best.ckpt``) keeps the weights its metrics were measured on."""
        if self.hp.reinit_timing == "after_eval" and ctx.epoch > 0:
            self.diagnose_and_relearn(ctx, ctx.epoch - 1)

    def before_evaluation(self, ctx):
        if self.hp.reinit_timing == "before_eval":
            self.diagnose_and_relearn(ctx, ctx.epoch)

    def diagnose_and_relearn(self, ctx, epoch: int) -> None:
        """Diagnose after 0-indexed ``epoch`` (if it is a re-initialisation epoch) and blend."""
        hp = self.hp
        if not is_reinit_epoch(epoch, hp.reinit_epoch, hp.reinit_num):
            return
        train, val = ctx.feature_pass("train"), ctx.feature_pass("val")
        initial = ctx.initial_encoder_state()
        for m in self.modalities:
            p_d = kmeans_purity(
                train[m].numpy(), train["label"].numpy(), self.num_classes, hp.kmeans_seed, hp.kmeans_n_init
            )
            p_v = kmeans_purity(
                val[m].numpy(), val["label"].numpy(), self.num_classes, hp.kmeans_seed, hp.kmeans_n_init
            )
            alpha = relearn_strength(p_d, p_v, hp.move_lambda)
            self.relearn(ctx, m, initial[m], alpha)
            self.last_diagnosis[m] = {"purity_train": p_d, "purity_val": p_v, "alpha": alpha}
            ctx.log_epoch(f"purity_train_{m}", p_d)
            ctx.log_epoch(f"purity_val_{m}", p_v)
            ctx.log_epoch(f"alpha_{m}", alpha)

    def relearn(self, ctx, m: str, initial: dict, alpha: float) -> None:
        encoder = ctx.model.encoders[m]
        named = dict(encoder.named_parameters())
        if self.hp.reinit_scope == "conv":
            convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
            names = [
                f"{n}.{k}" if n else k
                for n, mod in encoder.named_modules()
                if isinstance(mod, convs)
                for k, _ in mod.named_parameters(recurse=False)
            ]
        else:
            names = list(named)
        names = [n for n in names if n in named]
        blend_toward([named[n] for n in names], [initial[n] for n in names], alpha)
        if self.hp.reinit_buffers:
            for n, b in encoder.named_buffers():
                if b.is_floating_point() and n in initial:
                    blend_toward([b], [initial[n]], alpha)
        if self.hp.reset_momentum:
            for opt in ctx.optimizers.optimizers.values():
                for n in names:
                    opt.state.pop(named[n], None)

    def state_dict(self):
        return {"last_diagnosis": {m: dict(v) for m, v in self.last_diagnosis.items()}}

    def load_state_dict(self, state):
        self.last_diagnosis = {m: dict(v) for m, v in state["last_diagnosis"].items()}
