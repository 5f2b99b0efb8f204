"""``greedy``: balanced multi-modal learning against greedy learning (specs/methods/greedy.md).

Wu, Jastrzebski, Cho, Geras, "Characterizing and overcoming the greedy nature of learning in
multi-modal deep neural networks", ICML 2022. Official code: nyukat/greedy_multimodal_learning @
a190e03755bd8d0883b2c5c0cd7921d2561ce2ee. Two branches with intermediate fusion: MMTM blocks after
ResNet stages 2, 3 and 4 (``src/model.py`` ``MMTM_MVCNN``, lines 53-108), one linear head per
branch, L = CE(z^a, y) + CE(z^v, y) (``train.py:22-28``), fused prediction (z^a + z^v) / 2.

- MMTM (``src/balanced_mmtm.py`` ``MMTM.forward``, lines 93-154): squeeze s^m = mean of x^m over
  every position of each channel (video frames unfolded, the mean over T, H, W), u = ReLU(W_sq
  [s^a; s^v] + b_sq), e^m = sigmoid(W_m u + b_m), out^m = x^m * e^m; a running mean r^m of the
  batch-mean excitation, r <- (mean_B e + n r) / (n + 1); in curation mode caring c, e^c <- r^c.
- Conditional learning speed (``src/callbacks.py`` ``Bias_Mitigation_Strong``, lines 199-233;
  ``src/framework.py:310-315``): after each backward, rho_G = sum ||grad||^2 / sum ||w||^2 of a
  group, accumulated since the start of training; BDR_m = log10(M^bypass_m / M^main_m) with
  main_m = encoder m + head m and bypass_m = the excitation layers into m plus every squeeze
  layer; d = BDR_a - BDR_v.
- Controller (``callbacks.py:240-267``): from ``rebalance_start`` on, |d| > alpha starts ``window``
  (Q) curation steps caring for a if d > 0 else v, without measurement; the state set after step
  t's backward governs step t+1's forward. ``mode = "random"`` (``Bias_Mitigation_Random``,
  ``callbacks.py:269-303``) draws regular / caring a / caring v uniformly after each backward.

Encoders are run stage by stage through ``mmbench.backbones.staged.StagedEncoder`` (the ResNet18
encoders of the audio-visual datasets); any other encoder is refused (mfeat: a small CNN and an
MLP; NVGesture: three I3D; Twitter-15, Sarcasm: BERT), as is any modality count but two.

Flags (spec section 5; defaults = official code except where it is evidently a bug or leaks test
inputs): ``avg_scale_bug`` (false; true updates r^v with e^a's mean, ``balanced_mmtm.py:114``),
``running_avg_scope`` ("train"; "all_forwards" updates the running means in evaluation too, as
the official code), ``eval_curation`` ("off"; "inherit" evaluates in the current curation state,
``framework.py:146-148``), ``heads`` ("branch"; "concat" = BalanceBenchmark's single concat head
and fused CE, its main groups the encoders only), ``mmtm_stages`` ([2, 3, 4]; BalanceBenchmark
[1, 2, 3, 4]), ``mode`` ("guided" | "random").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmbench.backbones.staged import encoder_classes, is_staged, refuse_unstaged
from mmbench.methods.base import Method, check_choices
from mmbench.methods.heads import ConcatHead, xavier_linear
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError, MMBenchError

_CHOICES = {
    "mode": ("guided", "random"),
    "running_avg_scope": ("train", "all_forwards"),
    "eval_curation": ("off", "inherit"),
    "heads": ("branch", "concat"),
}
_WHY = "MMTM between ResNet stages"


@dataclass
class GreedyHyper:
    alpha: float = 0.01  # [code] configs/training_guided.gin:14 (ModelNet40)
    window: int = 5  # [code] training_guided.gin:15, Q curation steps per trigger
    rebalance_start: int = 1  # [code] starting_epoch=2 (1-indexed), training_guided.gin:16; 0-indexed here
    mmtm_stages: list = field(default_factory=lambda: [2, 3, 4])  # [code] model.py:58-60
    mmtm_ratio: int = 4  # [code] model.py:58-60
    mode: str = "guided"  # [code] training_guided.gin:10; "random" = Bias_Mitigation_Random
    avg_scale_bug: bool = False  # true = official r^v update with e^a's mean (balanced_mmtm.py:114)
    running_avg_scope: str = "train"  # "all_forwards" = official (running means updated in eval too)
    eval_curation: str = "off"  # "inherit" = official (framework.py:146-148)
    heads: str = "branch"  # [code] one fc per branch; "concat" = BalanceBenchmark
    head_init: str = "xavier"  # benchmark choice (the shared head init); official: PyTorch default


# --------------------------------------------------------------------------- MMTM
class MMTM(nn.Module):
    """Multi-modal transfer module between two branches (``balanced_mmtm.py:17-47, 93-154``):
    ``fc_squeeze: Linear(C_a + C_v, int(2 (C_a + C_v) / ratio))``, ``fc_excite_a``, ``fc_excite_v``
    (PyTorch default init), running means ``running_avg_a/v`` and their call counter ``count``."""

    def __init__(self, c_a: int, c_v: int, ratio: int = 4):
        super().__init__()
        hidden = int(2 * (c_a + c_v) / ratio)
        self.fc_squeeze = nn.Linear(c_a + c_v, hidden)
        self.fc_excite_a = nn.Linear(hidden, c_a)
        self.fc_excite_v = nn.Linear(hidden, c_v)
        self.register_buffer("running_avg_a", torch.zeros(c_a))
        self.register_buffer("running_avg_v", torch.zeros(c_v))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def forward(
        self, x_a, x_v, caring: str | None = None, update_avg: bool = False, avg_scale_bug: bool = False
    ):
        """``x_m``: ``(B, C_m, positions...)``. ``caring``: None (regular), ``"a"`` or ``"v"``
        (curation: that branch's excitation replaced by its running mean, after this call's
        update). Returns ``(out_a, out_v)``."""
        s_a = x_a.flatten(2).mean(-1)
        s_v = x_v.flatten(2).mean(-1)
        u = F.relu(self.fc_squeeze(torch.cat([s_a, s_v], dim=1)))
        e_a = torch.sigmoid(self.fc_excite_a(u))
        e_v = torch.sigmoid(self.fc_excite_v(u))
        if update_avg:
            with torch.no_grad():
                n = self.count.to(self.running_avg_a.dtype)
                mean_a = e_a.detach().float().mean(0)
                mean_v = mean_a if avg_scale_bug else e_v.detach().float().mean(0)
                self.running_avg_a.copy_((mean_a + n * self.running_avg_a) / (n + 1))
                self.running_avg_v.copy_((mean_v + n * self.running_avg_v) / (n + 1))
                self.count.add_(1)
        if caring == "a":
            e_a = self.running_avg_a.to(e_a.dtype).expand_as(e_a)
        elif caring == "v":
            e_v = self.running_avg_v.to(e_v.dtype).expand_as(e_v)
        shape_a = e_a.shape + (1,) * (x_a.dim() - 2)
        shape_v = e_v.shape + (1,) * (x_v.dim() - 2)
        return x_a * e_a.view(shape_a), x_v * e_v.view(shape_v)


class GreedyHeads(nn.Module):
    """The MMTMs by stage (``mmtm["2"]`` ...) and the heads: one per branch, or one concat head."""

    def __init__(self, widths: dict, modalities, dims: dict, num_classes: int, hp: GreedyHyper):
        super().__init__()
        a, v = modalities
        self.mmtm = nn.ModuleDict(
            {str(k): MMTM(widths[a][k - 1], widths[v][k - 1], hp.mmtm_ratio) for k in sorted(hp.mmtm_stages)}
        )
        if hp.heads == "branch":
            self.branch = nn.ModuleDict(
                {m: xavier_linear(dims[m], num_classes, hp.head_init) for m in modalities}
            )
        else:
            self.fc = ConcatHead([dims[m] for m in modalities], num_classes, modalities, init=hp.head_init)


# --------------------------------------------------------------------------- measurement and controller
def group_ratio(params) -> torch.Tensor:
    """rho_G = sum_p ||grad p||^2 / sum_p ||p||^2 over the group (a missing gradient is 0),
    ``callbacks.py:199-233``; one float64 tensor on the parameters' device."""
    params = list(params)
    grads = [p.grad for p in params if p.grad is not None]
    g2 = (
        torch.stack(torch._foreach_norm(grads)).double().pow(2).sum()
        if grads
        else torch.zeros((), dtype=torch.float64)
    )
    w2 = torch.stack(torch._foreach_norm([p.detach() for p in params])).double().pow(2).sum()
    return g2.to(w2.device) / w2


@dataclass
class Controller:
    """Bias_Mitigation_Strong's state (``callbacks.py:240-267``): accumulated speeds ``M`` =
    (bypass_a, main_a, bypass_v, main_v), ``d``, ``mode`` ("off" | "on"), ``caring``, ``count``."""

    alpha: float
    window: int
    rebalance_start: int
    M: list = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    d: float = 0.0
    mode: str = "off"
    caring: str = "a"
    count: int = 0

    def measuring(self) -> bool:
        return self.mode == "off"

    def measure(self, ratios) -> None:
        self.M = [m + float(r) for m, r in zip(self.M, ratios)]
        bdr_a = math.log10(self.M[0] / self.M[1])
        bdr_v = math.log10(self.M[2] / self.M[3])
        self.d = bdr_a - bdr_v

    def after_backward(self, ratios, epoch: int) -> None:
        """``ratios`` (4 floats, or None during curation) of the step just back-propagated; sets
        the mode of the next step's forward."""
        if epoch < self.rebalance_start:
            self.measure(ratios)
            self.mode, self.caring = "off", "a"
        elif self.mode == "off":
            self.measure(ratios)
            if abs(self.d) > self.alpha:
                self.mode, self.count, self.caring = "on", 0, ("a" if self.d > 0 else "v")
            else:
                self.mode, self.caring = "off", "a"
        else:
            self.count += 1
            if self.count == self.window:
                self.mode = "off"

    def state(self) -> dict:
        return {"M": list(self.M), "d": self.d, "mode": self.mode, "caring": self.caring, "count": self.count}

    def load(self, state: dict) -> None:
        self.M, self.d, self.mode = list(state["M"]), state["d"], state["mode"]
        self.caring, self.count = state["caring"], state["count"]


# --------------------------------------------------------------------------- the method
@register_method
class Greedy(Method):
    name = "greedy"
    settings_toml = "greedy.toml"
    Hyper = GreedyHyper
    max_modalities = 2
    modality_logits = "branch m's head on MMTM-fused features (not unimodal)"
    fusion_logits = "mean of the two branch logits"
    conformance_datasets: ClassVar[tuple] = ("cremad",)
    conformance_overrides: ClassVar[dict] = {"data.preset": "smoke", "method.rebalance_start": 0}

    def __init__(self, hyper, modalities, num_classes, feature_dims):
        super().__init__(hyper, modalities, num_classes, feature_dims)
        self.controller = Controller(hyper.alpha, hyper.window, hyper.rebalance_start)
        self.widths: dict[str, tuple] | None = None

    # ------------------------------------------------------------------ configuration
    @classmethod
    def validate_params(cls, params, spec):
        if len(spec.modalities) != 2:
            raise ConfigError(
                f"greedy supports exactly 2 modalities; {spec.name} has {len(spec.modalities)}: "
                + ", ".join(spec.modalities)
            )
        check_choices(params, _CHOICES)
        stages = params.get("mmtm_stages")
        if (
            not isinstance(stages, list)
            or not stages
            or not set(stages) <= {1, 2, 3, 4}
            or len(set(stages)) != len(stages)
        ):
            raise ConfigError(f"method.mmtm_stages must be distinct stages among 1, 2, 3, 4, got {stages!r}")
        for key, low in (("window", 1), ("rebalance_start", 0), ("mmtm_ratio", 1)):
            if not isinstance(params.get(key), int) or params[key] < low:
                raise ConfigError(f"method.{key} must be an integer >= {low}, got {params.get(key)!r}")
        if not params.get("alpha", -1) >= 0:
            raise ConfigError(f"method.alpha must be >= 0, got {params.get('alpha')!r}")

    @classmethod
    def validate_config(cls, cfg, spec):
        refuse_unstaged(cls.name, spec.name, encoder_classes(spec, cfg.data), _WHY)

    def inspect_encoders(self, encoders):
        for m in self.modalities:
            if not is_staged(encoders[m]):
                raise ConfigError(
                    f"greedy needs staged convolutional encoders ({_WHY}); this dataset uses "
                    f"{type(encoders[m]).__name__} for {m}"
                )
        self.widths = {m: tuple(encoders[m].stage_widths) for m in self.modalities}

    def head_meanings(self):
        if self.hp.heads == "concat":
            return {
                "fusion": "concat head on MMTM-fused features",
                **{m: "split of the concat head on MMTM-fused features" for m in self.modalities},
            }
        return super().head_meanings()

    def build_heads(self, feature_dims, num_classes):
        if self.widths is None:
            raise ConfigError("greedy builds its MMTMs from the encoders' stage widths (inspect_encoders)")
        return GreedyHeads(self.widths, self.modalities, feature_dims, num_classes, self.hp)

    # ------------------------------------------------------------------ forward
    def staged_forward(self, model, batch, caring: str | None, update_avg: bool) -> dict[str, torch.Tensor]:
        """``MMTM_MVCNN.forward`` (``model.py:81-108``): stages of both encoders, an MMTM after each
        stage in ``mmtm_stages``, pooling, the heads. Returns ``{"fusion", a, v}`` logits."""
        a, v = self.modalities
        enc = {m: model.encoders[m] for m in self.modalities}
        heads = model.heads
        n = batch["label"].shape[0]
        h = {m: enc[m].stem(batch[m]) for m in self.modalities}
        stages = {m: enc[m].stages() for m in self.modalities}
        for k in range(1, len(stages[a]) + 1):
            h = {m: stages[m][k - 1](h[m]) for m in self.modalities}
            if str(k) in heads.mmtm:
                out_a, out_v = heads.mmtm[str(k)](
                    enc[a].per_sample(h[a], n),
                    enc[v].per_sample(h[v], n),
                    caring,
                    update_avg,
                    self.hp.avg_scale_bug,
                )
                h = {a: enc[a].from_per_sample(out_a), v: enc[v].from_per_sample(out_v)}
        feats = {m: enc[m].pool(h[m], n) for m in self.modalities}
        if self.hp.heads == "concat":
            return heads.fc(feats)
        z = {m: heads.branch[m](feats[m]) for m in self.modalities}
        return {"fusion": (z[a] + z[v]) / 2, **z}

    def speed_groups(self, model) -> list[list[nn.Parameter]]:
        """(bypass_a, main_a, bypass_v, main_v): bypass_m = fc_excite_m of every MMTM plus every
        fc_squeeze; main_m = encoder m and its branch head (``heads = "concat"``: encoder m only)."""
        a, v = self.modalities
        heads = model.heads
        squeeze = [p for mm in heads.mmtm.values() for p in mm.fc_squeeze.parameters()]
        groups = []
        for m, excite in ((a, "fc_excite_a"), (v, "fc_excite_v")):
            bypass = [p for mm in heads.mmtm.values() for p in getattr(mm, excite).parameters()] + squeeze
            main = list(model.encoders[m].parameters())
            if self.hp.heads == "branch":
                main += list(heads.branch[m].parameters())
            groups += [bypass, main]
        return groups

    # ------------------------------------------------------------------ step
    def training_step(self, model, batch, ctx):
        """Forward in the controller's mode; L = CE(z^a, y) + CE(z^v, y) (``heads = "concat"``:
        CE(z, y)); backward; measure (regular steps) and update the controller; optimiser step."""
        a, v = self.modalities
        y = batch["label"]
        ctl = self.controller
        caring = ctl.caring if ctl.mode == "on" else None
        with ctx.autocast():
            logits = self.staged_forward(model, batch, caring, update_avg=True)
        if self.hp.heads == "concat":
            losses = {"fusion": F.cross_entropy(logits["fusion"].float(), y)}
        else:
            losses = {m: F.cross_entropy(logits[m].float(), y) for m in (a, v)}
        loss = sum(losses.values())
        ctx.optimizers.zero_grad()
        loss.backward()
        if self.hp.mode == "guided":
            ratios = None
            if ctl.measuring() or ctx.epoch < ctl.rebalance_start:
                ratios = torch.stack([group_ratio(g) for g in self.speed_groups(model)]).tolist()
            ctl.after_backward(ratios, ctx.epoch)
        else:
            self._random_mode(ctx)
        ctx.optimizers.step()

        ctx.log("curation", float(caring is not None))
        ctx.log(f"curation_{a}", float(caring == "a"))
        ctx.log(f"curation_{v}", float(caring == "v"))
        ctx.log("d", ctl.d)
        out = {
            "loss": loss.detach(),
            **{f"loss_{m}": val.detach() for m, val in losses.items() if m != "fusion"},
        }
        out.update({f"acc_{m}": (logits[m].detach().argmax(1) == y).float().mean() for m in (a, v)})
        return out

    def _random_mode(self, ctx) -> None:
        """``Bias_Mitigation_Random``: from ``rebalance_start`` on, regular / caring a / caring v
        uniformly for the next step, drawn from the method's own random stream at the global step
        (``ctx.generator``), so a resumed run draws the same choices."""
        ctl = self.controller
        if ctx.epoch < ctl.rebalance_start:
            ctl.mode, ctl.caring = "off", "a"
            return
        choice = int(torch.randint(3, (1,), generator=ctx.generator("greedy/mode", device="cpu")))
        ctl.mode, ctl.caring = ("off", "a") if choice == 0 else ("on", "a" if choice == 1 else "v")

    @torch.no_grad()
    def predict(self, model, batch):
        """Both branches with every MMTM regular and no running-mean update (``eval_curation =
        "inherit"``: the current curation state; ``running_avg_scope = "all_forwards"``: updated)."""
        unstaged = [m for m in self.modalities if not is_staged(model.encoders[m])]
        if unstaged:  # e.g. the probes' Shapley values, which feed cached pooled features
            raise MMBenchError(
                "greedy fuses between encoder stages (MMTM): its prediction cannot be computed from pooled "
                f"features ({type(model.encoders[unstaged[0]]).__name__} for {unstaged[0]})"
            )
        ctl = self.controller
        caring = ctl.caring if (self.hp.eval_curation == "inherit" and ctl.mode == "on") else None
        return self.staged_forward(
            model, batch, caring, update_avg=self.hp.running_avg_scope == "all_forwards"
        )

    def epoch_diagnostics(self):
        c = self.controller
        bdr = [math.log10(c.M[0] / c.M[1]), math.log10(c.M[2] / c.M[3])] if all(c.M) else [None, None]
        a, v = self.modalities
        return {"greedy_d": c.d, f"bdr_{a}": bdr[0], f"bdr_{v}": bdr[1]}

    def state_dict(self):
        return {"controller": self.controller.state()}

    def load_state_dict(self, state):
        self.controller.load(state["controller"])
