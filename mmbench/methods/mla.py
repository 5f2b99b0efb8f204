"""``mla``: Multimodal Learning with Alternating unimodal adaptation.

Zhang, Yoon, Bansal, Yao, "Multimodal Representation Learning by Alternating Unimodal
Adaptation", CVPR 2024. Official code: Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-
Adaptation (``main.py`` ``train_epoch`` with ``--gs_flag``, ``utils/utils.py`` ``GSPlugin``,
``models/fusion_modules.py``).

Each batch: one forward of every encoder, then one optimiser step per modality (dataset order) on
``CE(h(phi_m), y)`` through one head ``h`` shared by all modalities; ``h`` is re-applied after the
previous modality's step. The OWM projector on ``h``'s weight gradient (``owm="on"``, the paper)
never fires in the released code (``owm="off"``, default). At test time the unimodal logits are
fused with fixed weights (code default) or entropy gates (``entropy_batch`` = the code's
``--dynamic``; ``entropy_sample`` = the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.methods.base import Method
from mmbench.methods.heads import shared_head_inputs, xavier_linear
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError

GATES = ("fixed", "entropy_sample", "entropy_batch")


@dataclass
class MLAHyper:
    # fixed fusion weights in modality order (list) or by name (dict); None = equal
    fusion_weights: list | dict | None = None  # CREMA-D [code] av_alpha = 0.55
    gate: str = "fixed"  # [code] default (no --dynamic); entropy_batch = --dynamic; entropy_sample = paper
    owm: str = "off"  # [code] as released the GSPlugin projector never fires; "on" = the paper
    proj_dim: int | None = None  # Linear(d_m, proj_dim) per modality when feature sizes differ [guess]
    zero_grad_mode: str = "zeros"  # [code] torch 1.8 zero_grad() leaves zero tensors; "none" = torch >= 2
    head_init: str = "xavier"  # [code] main.py model.apply(weight_init) covers fc_out


# ----------------------------------------------------------------------------- fusion gates
def entropy_sample_weights(logits: list[torch.Tensor]) -> torch.Tensor:
    """Paper gate (the entropy-based test-time fusion): per-sample entropy e_m of softmax over classes, weights
    softmax over m of (-e_m) = exp(max e - e_m) / sum_j exp(max e - e_j). Shape (M, B)."""
    ent = torch.stack([-(F.softmax(z, 1) * F.log_softmax(z, 1)).sum(1) for z in logits])
    return F.softmax(-ent, dim=0)


def entropy_batch_weights(logits: list[torch.Tensor]) -> torch.Tensor:
    """Code gate (``calculate_entropy`` with ``--dynamic``): softmax over the *batch* axis and a sum
    over all B x K entries, one scalar entropy per modality and batch. Shape (M,)."""
    ent = torch.stack([-(F.softmax(z, 0) * F.log_softmax(z, 0)).sum() for z in logits])
    return F.softmax(-ent, dim=0)


def fuse(logits: list[torch.Tensor], gate: str, fixed: torch.Tensor | None = None):
    """(fused logits, weights) for the unimodal logits of one batch."""
    if gate == "fixed":
        w = fixed.to(logits[0].dtype)
        return sum(wm * z for wm, z in zip(w, logits)), w
    if gate == "entropy_sample":
        w = entropy_sample_weights(logits)
        return sum(wm[:, None] * z for wm, z in zip(w, logits)), w
    if gate == "entropy_batch":
        w = entropy_batch_weights(logits)
        return sum(wm * z for wm, z in zip(w, logits)), w
    raise ConfigError(f"unknown mla gate {gate!r}; choose one of {', '.join(GATES)}")


# ----------------------------------------------------------------------------- OWM projector
class OWMProjector:
    """The paper's orthogonal-weight-modification projector on the shared head (official ``utils/utils.py`` ``GSPlugin``).

    ``P`` (d x d) starts at I and is never reset. Per step (not the first one ever, as
    ``GSPlugin.before_update`` with ``exp_count != 0``): ``alpha = 0.1 ** (1 + i / N)``,
    ``r`` = batch mean of the (detached) features, ``k = P r^T``,
    ``P <- P - k k^T / (alpha + r k)``, ``P <- P / ||P||_F``, then ``grad(W) <- grad(W) P^T``.
    The denominator is the scalar ``r k`` of OWM (the code's ``torch.mm(k, r)`` is an outer
    product, a d x d element-wise division; moot there since the projector never fires)."""

    def __init__(self, dim: int):
        self.P = torch.eye(dim)

    @staticmethod
    def alpha(i: int, n: int) -> float:
        return 0.1 ** (1.0 + i / n)

    @torch.no_grad()
    def update(self, feats: torch.Tensor, i: int, n: int) -> None:
        P = self.P.to(feats.device)
        r = feats.detach().to(P.dtype).mean(0, keepdim=True)  # 1 x d, in P's dtype (fp32)
        k = P @ r.t()  # d x 1
        P = P - (k @ k.t()) / (self.alpha(i, n) + r @ k)
        self.P = P / torch.linalg.matrix_norm(P, ord="fro")

    @torch.no_grad()
    def project(self, grad: torch.Tensor) -> torch.Tensor:
        return grad @ self.P.to(grad.device, grad.dtype).t()


# ----------------------------------------------------------------------------- heads
class MLAHeads(nn.Module):
    """One shared ``Linear(d, K)`` (``ConcatFusion.fc_out`` used on each modality alone), with a
    ``Linear(d_m, proj_dim)`` per modality in front when ``proj_dim`` is set (benchmark
    adaptation for unequal feature sizes; the MLA code has none)."""

    def __init__(self, dims: dict[str, int], num_classes: int, modalities, proj_dim, init: str):
        super().__init__()
        self.modalities = tuple(modalities)
        self.proj, width = shared_head_inputs(dims, self.modalities, proj_dim, "mla")
        self.width = width
        self.shared = xavier_linear(width, num_classes, init)

    def features(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.proj is None:
            return dict(feats)
        return {m: self.proj[m](f) for m, f in feats.items()}

    def forward(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Unimodal logits z_m = h(phi_m) (fusion is the method's gate)."""
        return {m: self.shared(f) for m, f in self.features(feats).items()}


# ----------------------------------------------------------------------------- the method
@register_method
class MLA(Method):
    name = "mla"
    settings_toml = "mla.toml"
    Hyper = MLAHyper
    modality_logits = "shared head on that modality, h(phi_m)"
    fusion_logits = "weighted sum of the h(phi_m) (method.gate: fixed weights or entropy gates)"

    def __init__(self, hyper, modalities, num_classes, feature_dims):
        super().__init__(hyper, modalities, num_classes, feature_dims)
        self.fixed = self._fixed_weights(hyper.fusion_weights, self.modalities)
        self.owm: OWMProjector | None = None
        self.step_count = 0  # GSPlugin.exp_count: optimiser steps so far, never reset
        self._gate_sum: torch.Tensor | None = None
        self._gate_n = 0

    @staticmethod
    def _fixed_weights(weights, modalities) -> torch.Tensor:
        if weights is None:
            return torch.full((len(modalities),), 1.0 / len(modalities))
        if isinstance(weights, dict):
            missing = set(modalities) - set(weights)
            if missing or set(weights) - set(modalities):
                raise ConfigError(f"method.fusion_weights needs one weight for each of {', '.join(modalities)}")
            weights = [weights[m] for m in modalities]
        if len(weights) != len(modalities):
            raise ConfigError(
                f"method.fusion_weights has {len(weights)} values; give one per modality ({', '.join(modalities)})"
            )
        return torch.tensor([float(w) for w in weights])

    @classmethod
    def result_settings(cls, params):
        """The batch-entropy gate (``--dynamic``) is a softmax over the batch axis: its fused
        logits depend on the evaluation batch size (official: the test loader's 64, main.py:816)."""
        return ("train.eval_batch_size",) if params.get("gate") == "entropy_batch" else ()

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        if params.get("gate") not in GATES:
            raise ConfigError(f"method.gate must be one of {', '.join(GATES)}")
        if params.get("owm") not in ("off", "on"):
            raise ConfigError("method.owm must be 'off' (as released) or 'on' (the paper)")
        if params.get("zero_grad_mode") not in ("zeros", "none"):
            raise ConfigError("method.zero_grad_mode must be 'zeros' (official, torch 1.8) or 'none'")
        cls._fixed_weights(params.get("fusion_weights"), spec.modalities)

    def build_heads(self, feature_dims, num_classes):
        heads = MLAHeads(feature_dims, num_classes, self.modalities, self.hp.proj_dim, self.hp.head_init)
        if self.hp.owm == "on" and (self.owm is None or self.owm.P.shape[0] != heads.width):
            self.owm = OWMProjector(heads.width)
        return heads

    def training_step(self, model, batch, ctx):
        """Official ``main.py`` ``train_epoch`` (``--gs_flag``): features once, then per modality CE(h(feats[m])), backward, (OWM), step."""
        y = batch["label"]
        heads = model.heads
        opt = ctx.optimizers
        set_to_none = self.hp.zero_grad_mode == "none"
        n_batches = len(ctx.train_loader) if ctx.train_loader is not None else 1
        out = {}
        with ctx.autocast():
            feats = heads.features(self.encode(model, batch))
        total = 0.0
        for m in self.modalities:
            with ctx.autocast():
                z = heads.shared(feats[m])
            loss = F.cross_entropy(z.float(), y)
            loss.backward()
            if self.owm is not None and self.step_count > 0:
                w = heads.shared.weight
                before = w.grad.norm()
                self.owm.update(feats[m], ctx.step_in_epoch, n_batches)
                w.grad = self.owm.project(w.grad)
                ctx.log("owm_grad_ratio", w.grad.norm() / torch.clamp(before, min=1e-12))
            opt.step()
            opt.zero_grad(set_to_none=set_to_none)
            self.step_count += 1
            out[f"loss_{m}"] = loss.detach()
            out[f"acc_{m}"] = (z.detach().argmax(1) == y).float().mean()
            total = total + loss.detach()
        opt.zero_grad(set_to_none=True)
        out["loss"] = total / len(self.modalities)
        return out

    @torch.no_grad()
    def predict(self, model, batch):
        z = model.heads(self.encode(model, batch))
        logits = [z[m] for m in self.modalities]
        fused, w = fuse(logits, self.hp.gate, self.fixed.to(logits[0].device))
        w_mean = (w.mean(1) if w.dim() == 2 else w).float()  # summed on device: no sync per batch
        self._gate_sum = w_mean if self._gate_sum is None else self._gate_sum + w_mean
        self._gate_n += 1
        return {"fusion": fused, **z}

    def epoch_diagnostics(self):
        """Mean fusion weight of each modality over this epoch's evaluation batches."""
        out = {"owm": self.hp.owm, "gate": self.hp.gate}
        if self._gate_sum is not None:
            mean = (self._gate_sum / self._gate_n).cpu()
            out["gate_weight"] = {m: float(v) for m, v in zip(self.modalities, mean)}
        self._gate_sum, self._gate_n = None, 0
        return out

    def state_dict(self):
        return {"step_count": self.step_count, "P": None if self.owm is None else self.owm.P.cpu()}

    def load_state_dict(self, state):
        self.step_count = int(state.get("step_count", 0))
        if state.get("P") is not None:
            self.owm = OWMProjector(state["P"].shape[0])
            self.owm.P = state["P"].clone()
