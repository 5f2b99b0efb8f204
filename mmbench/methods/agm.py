"""``agm``: Adaptive Gradient Modulation.

Li, Li, Hu, Lei, Li, Zhou, "Boosting Multi-modal Model Performance with Adaptive Gradient
Modulation", ICCV 2023; official code Lingy12/AGM_ICCV2023 (``model/CREMAD_net.py`` ``GradMod``,
``run/CREMAD_main.py``; 3 modalities: ``model/URFunny_net.py``, ``run/URFunny_main.py``).

The fused output is split into per-modality responses m_m by a Shapley-style decomposition over
zero-masked inputs (``Modality_Audio``/``Modality_Visual``); each modality's current dominance
r^m is compared with the one of its running-mean score, and the gradient flowing back through
m_m is multiplied by k^m = exp(alpha * min(rbar^m - r^m, cap)) (the ``Modality_out`` backward
hooks). Runs on any number of modalities M with 2^M - 1 coalitions (f(empty) cancels).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mmbench.methods.base import Method, check_choices
from mmbench.methods.heads import ConcatHead
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError

_CHOICES = {
    "scale_after_window": ("persist", "reset"),
    "window_index_base": (0, 1),
    "masked_mode": ("eval",),
    "score_dtype": ("float64", "float32"),
}
NLL_FLOOR = 1e-8  # official: -log(1e-8) when softmax(m)[y] < 1e-8


@dataclass
class AGMHyper:
    alpha: float = 1.5  # [paper] CREMA-D, as quoted in lihongcs/AGM issues #3, #10
    cap: float = 10.0  # [code] CREMAD_main.py min(rbar - r, 10); UR-Funny 7
    window_start: int = 0  # [code] config.py --modulation_starts (epochs counted from 1)
    window_end: int = 20  # [code] config.py --modulation_ends (epochs counted from 1)
    clip_threshold: float = 1.0  # [code] CREMA-D: clip when any |grad| of the fused head weight > 1
    clip_norm: float = 1.0  # [code] CREMA-D clip_grad_norm_(model.parameters(), 1.0)
    # "persist": the backward hooks keep the last in-window scale after the window (code);
    # "reset": scale 1 outside the window
    scale_after_window: str = "persist"
    window_index_base: int = 1  # [code] the official loop counts epochs from 1: harness epoch e is e + 1
    masked_mode: str = "eval"  # [code] masked passes in eval mode, full pass in train mode
    # "float64": scores, running means, ratios and coefficients in double precision, as the
    # official Python-float chain (run/CREMAD_main.py); "float32": the tensors' dtype (4e-5 relative)
    score_dtype: str = "float64"


# --------------------------------------------------------------------------- the algorithm
class _GradScale(torch.autograd.Function):
    """G_k: identity forward, gradient x k backward (the official ``Modality_out`` hook)."""

    @staticmethod
    def forward(ctx, x, k):
        ctx.save_for_backward(k)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        (k,) = ctx.saved_tensors
        return grad * k.to(grad.dtype), None


def grad_scale(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return _GradScale.apply(x, torch.as_tensor(k, dtype=torch.float32, device=x.device).detach())


def coalitions(num_modalities: int) -> list[int]:
    """Non-empty coalitions as bit masks (bit i = modality i of the dataset order), ascending;
    the last one is the full set."""
    return list(range(1, 2**num_modalities))


def response_weights(num_modalities: int) -> torch.Tensor:
    """A [M, 2^M - 1] with m_m = sum_S A[m, S] f(S) over the non-empty coalitions S (columns in
    ``coalitions`` order), where m_m = phi_m + f(empty)/M and phi_m is the exact Shapley value
    sum_{S not containing m} |S|!(M-|S|-1)!/M! [f(S + m) - f(S)]. The f(empty) terms cancel, so
    the empty coalition has no column. For M = 2: m_a = [f(a,v) - f(0,v) + f(a,0)] / 2
    (official ``Modality_Audio``); for M = 3 the UR-Funny ``Modality_*`` forms."""
    M = num_modalities
    fact = math.factorial
    w = [fact(s) * fact(M - s - 1) / fact(M) for s in range(M)]
    A = torch.zeros(M, 2**M - 1, dtype=torch.float64)
    for m in range(M):
        for mask in coalitions(M):
            size = mask.bit_count()
            if mask >> m & 1:
                A[m, mask - 1] += w[size - 1]  # S + m with |S| = size - 1
            else:
                A[m, mask - 1] -= w[size]  # -f(S), S without m
    return A


def decompose(outputs: torch.Tensor) -> torch.Tensor:
    """Responses [M, B, K] from the stacked coalition outputs [2^M - 1, B, K] (``coalitions``
    order), one batched contraction; sum over m equals the full-set output."""
    M = (outputs.shape[0] + 1).bit_length() - 1
    return torch.einsum("mc,cbk->mbk", _weights_on(M, outputs.device, outputs.dtype), outputs)


@functools.cache
def _weights_on(num_modalities: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # built and copied to the device once per run, not every step
    return response_weights(num_modalities).to(device=device, dtype=dtype)


def response_scores(responses: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """s^m = mean_i -log max(softmax(m_m,i)[y_i], 1e-8) for every m: [M] (official score loop)."""
    logp = F.log_softmax(responses.float(), dim=2)
    nll = -logp.gather(2, y.view(1, -1, 1).expand(responses.shape[0], -1, 1)).squeeze(2)
    return nll.clamp(max=-math.log(NLL_FLOOR)).mean(1)


def dominance_ratios(scores: torch.Tensor) -> torch.Tensor:
    """r^m = exp(mean_{k != m} s^k - s^m) (2 modalities: r^a = exp(s^v - s^a); 3: the UR-Funny
    ``exp((mean - s^m) * 3/2)``)."""
    M = scores.shape[-1]
    others = (scores.sum(-1, keepdim=True) - scores) / (M - 1)
    return torch.exp(others - scores)


def modulation_coefficients(scores, running, alpha: float, cap: float):
    """(k, r, rbar): k^m = exp(alpha * min(rbar^m - r^m, cap)), rbar from the running scores."""
    r = dominance_ratios(scores)
    rbar = dominance_ratios(running)
    return torch.exp(alpha * torch.clamp(rbar - r, max=cap)), r, rbar


def running_mean(previous: torch.Tensor, current: torch.Tensor, t: int) -> torch.Tensor:
    """sbar_t = sbar_{t-1} (t - 1)/t + s_t / t, t = global step counted from 1."""
    return previous * ((t - 1) / t) + current / t


@torch.no_grad()
def clip_if_head_grad_exceeds(
    params, head_weight: torch.Tensor, threshold: float, max_norm: float
) -> torch.Tensor:
    """Official CREMA-D rule: if any entry of the fused head weight's gradient lies outside
    [-threshold, threshold], ``clip_grad_norm_(params, max_norm)``. Done without a host sync;
    returns whether it clipped (a 0-d tensor)."""
    grads = [p.grad for p in params if p.grad is not None]
    trigger = head_weight.grad.abs().max() > threshold
    total = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)  # as torch.nn.utils.clip_grad_norm_
    coef = torch.where(trigger, coef, torch.ones_like(coef))
    torch._foreach_mul_(grads, coef)
    return trigger


def masked_input(x: torch.Tensor) -> torch.Tensor:
    """A single zero input of ``x``'s per-sample shape (the official ``torch.zeros_like``)."""
    return x.new_zeros((1,) + tuple(x.shape[1:]))


def coalition_outputs(
    model, batch: dict, modalities, full: torch.Tensor | None = None, naive: bool = False
) -> torch.Tensor:
    """Stacked fused logits f(S) [2^M - 1, B, K] for every non-empty coalition, ``coalitions``
    order; f(S) replaces the inputs of the modalities outside S by zeros. The proper coalitions
    run in the model's current mode (eval during training, as the code). ``full`` (the train-mode
    f(all)) fills the last slot when given.

    Exact shortcut (default): each encoder runs once on its real inputs and once on one zero
    sample (broadcast over the batch), then only the head runs per coalition; identical to
    ``naive=True`` (one full forward per coalition with zeroed inputs) up to float rounding,
    because eval-mode encoders act on each sample independently."""
    M = len(modalities)
    B = batch["label"].shape[0]
    masks = coalitions(M)
    outs = []
    if naive:
        for mask in masks[:-1] if full is not None else masks:
            xs = {
                m: batch[m] if mask >> i & 1 else torch.zeros_like(batch[m]) for i, m in enumerate(modalities)
            }
            feats = {m: model.encoders[m](xs[m]) for m in modalities}
            outs.append(model.heads(feats)["fusion"])
    else:
        real = {m: model.encoders[m](batch[m]) for m in modalities}
        zero = {m: model.encoders[m](masked_input(batch[m])) for m in modalities}
        for mask in masks[:-1] if full is not None else masks:
            feats = {m: real[m] if mask >> i & 1 else zero[m].expand(B, -1) for i, m in enumerate(modalities)}
            outs.append(model.heads(feats)["fusion"])
    if full is not None:
        outs.append(full)
    return torch.stack([o.float() for o in outs])


# --------------------------------------------------------------------------- the method
@register_method
class AGM(Method):
    name = "agm"
    settings_toml = "agm.toml"
    Hyper = AGMHyper
    modality_logits = "Shapley-style response m_m from zero-masked passes (eval mode)"
    fusion_logits = "concat head on every modality, f(all) (eval mode)"
    epoch_windows = (("window_start", "window_end"),)

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        check_choices(params, _CHOICES)
        if len(spec.modalities) < 2:
            raise ConfigError(f"agm needs at least 2 modalities; {spec.name} has {len(spec.modalities)}")

    def __init__(self, hyper, modalities, num_classes, feature_dims):
        super().__init__(hyper, modalities, num_classes, feature_dims)
        M = len(self.modalities)
        self.dtype = torch.float64 if hyper.score_dtype == "float64" else torch.float32
        self.running = torch.zeros(M, dtype=self.dtype)  # sbar, never reset
        self.scale = torch.ones(M, dtype=self.dtype)  # the hooks' current scales (initially 1)

    def build_heads(self, feature_dims, num_classes):
        return ConcatHead([feature_dims[m] for m in self.modalities], num_classes, self.modalities)

    def in_window(self, epoch: int) -> bool:
        e = epoch + self.hp.window_index_base
        return self.hp.window_start <= e <= self.hp.window_end

    def training_step(self, model, batch, ctx):
        """Spec §3: full pass (train mode), masked passes (eval mode, with grad), responses,
        coefficients from the scores and their running mean, L = CE(sum_m G_k(m_m), y), one
        backward, conditional clipping, one optimiser step."""
        y = batch["label"]
        opts = ctx.optimizers
        dev = y.device
        with ctx.autocast():
            full = model.heads(self.encode(model, batch))["fusion"]
            model.eval()
            outputs = coalition_outputs(model, batch, self.modalities, full=full)
            model.train()
        responses = decompose(outputs)
        with torch.no_grad():
            running = self.running.to(device=dev, dtype=self.dtype)
            scores = response_scores(responses, y).to(self.dtype)
            k, r, rbar = modulation_coefficients(scores, running, self.hp.alpha, self.hp.cap)
            modulated = self.in_window(ctx.epoch)
            if modulated:
                scale = k
            elif self.hp.scale_after_window == "persist":
                scale = self.scale.to(device=dev, dtype=self.dtype)
            else:
                scale = torch.ones_like(k)
        fused = sum(grad_scale(responses[i], scale[i]) for i in range(len(self.modalities)))
        loss = F.cross_entropy(fused, y)
        opts.zero_grad()
        loss.backward()
        self.running = running_mean(running, scores, ctx.global_step + 1)
        self.scale = scale
        params = [p for o in opts.optimizers.values() for g in o.param_groups for p in g["params"]]
        clipped = clip_if_head_grad_exceeds(
            params, model.heads.fc.weight, self.hp.clip_threshold, self.hp.clip_norm
        )
        opts.step()

        for i, m in enumerate(self.modalities):
            ctx.log(f"score_{m}", scores[i])
            ctx.log(f"ratio_{m}", r[i])
            ctx.log(f"ratio_ref_{m}", rbar[i])
            ctx.log(f"coeff_{m}", k[i])
            ctx.log(f"scale_{m}", scale[i])
        ctx.log("modulated", float(modulated))
        ctx.log("clipped", clipped.float())
        out = {"loss": loss.detach()}
        for i, m in enumerate(self.modalities):
            out[f"acc_{m}"] = (responses[i].detach().argmax(1) == y).float().mean()
        return out

    @torch.no_grad()
    def predict(self, model, batch):
        """Eval mode: ``{"fusion": f(all), m: m_m}``, every pass in eval mode."""
        outputs = coalition_outputs(model, batch, self.modalities)
        responses = decompose(outputs)
        out = {"fusion": outputs[-1]}
        out.update({m: responses[i] for i, m in enumerate(self.modalities)})
        return out

    def state_dict(self):
        return {"running": self.running.detach().cpu(), "scale": self.scale.detach().cpu()}

    def load_state_dict(self, state):
        self.running = state["running"].clone().to(self.dtype)
        self.scale = state["scale"].clone().to(self.dtype)
