"""``valuation``: sample-level modality valuation and re-sampling (specs/methods/valuation.md).

Wei, Feng, Wang, Hu, "Enhancing Multimodal Cooperation via Sample-level Modality Valuation",
CVPR 2024 (arXiv 2309.06255). Official code GeWu-Lab/Valuate-and-Enhance-Multimodal-Cooperation,
commit 7ed12b07ee7d233aa835089185c909aaa3ff6b1e (``code/sample_level.py``,
``code/modality_level.py``, ``code/datasets/dataloader.py``, ``code/models/models.py``).

1. Valuation at the end of every epoch e >= ``warmup`` - 1 but the last (``sample_level.py:75-153``,
   ``321-341``): one eval-mode, no-grad pass over the training set with its training transforms
   (``ctx.feature_pass("train")``); for every non-empty coalition S the coalition logits
   z_S = sum_{m in S} W_m phi^m + b (features outside S zeroed, full bias;
   ``models.py:74-86``), value v(S) = |S| 1[argmax z_S = y] (``sample_level.py:110-118``), and the
   exact Shapley contribution phi^m of each modality (``shapley``).
2. Re-sampling (``dataloader.py:154-186``): the next epoch trains on every sample once with all
   modalities plus n^m copies keeping only m: 1 if 0.4 < phi^m < 1, 2 if -0.1 < phi^m < 0.4, 3 if
   phi^m < -0.1 (``copies``). The list is the method's ``ItemPlan``; the harness shuffles and
   batches it and gives each batch ``keep``.
3. Step (``models.py:61-72``): phi^m <- keep^m phi^m after the encoder (every encoder still runs on
   every item), L = CE(W [phi^1; ...; phi^M] + b, y); one backward.

``level = "modality"`` (``modality_level.py:143-177``, ``dataloader.py:297-316``; two modalities):
contributions averaged over ``part_ratio`` N samples drawn with replacement, c_m; gap_m = 1 - c_m;
d = |gap_a - gap_v| 2/3 alpha (``func``: linear, tanh of it, or (|gap_a - gap_v| 2/3)^1.5 alpha);
every sample once plus int(d N) draws with replacement keeping only the larger-gap modality. The
draws come from a generator seeded by (run seed, epoch).

Flags (spec §5): ``value = "indicator"`` (BalanceBenchmark: v(S) = correct), ``mask = "input"``
(zero the raw input, BalanceBenchmark). Not offered: the spec's ``modality_subset_pass`` (value only
the drawn subset at the modality level); the code's behaviour (every sample valued) runs.
More than two modalities: exact Shapley over 2^M - 1 coalitions [guess]; the modality level is
refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import torch
import torch.nn.functional as F

from mmbench.methods.base import Method, check_choices, modality_accuracies
from mmbench.methods.heads import ConcatHead
from mmbench.methods.plan import ItemPlan
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError

_CHOICES = {
    "level": ("sample", "modality"),
    "value": ("size", "indicator"),
    "mask": ("feature", "input"),
    "func": ("linear", "tanh", "square"),
    "head_init": ("torch", "xavier"),
}


@dataclass
class ValuationHyper:
    level: str = "sample"  # [code] sample_level.py (the paper's method); "modality" = modality_level.py
    warmup: int = 5  # [code] sample_level.py:44 first re-sampled epoch (KS)
    value: str = "size"  # [code] v(S) = |S| x correct; "indicator" = BalanceBenchmark
    mask: str = "feature"  # [code] zero features after the encoder; "input" = BalanceBenchmark
    alpha: float = 1.0  # [code] modality_level.py:52 (modality level)
    part_ratio: float = 0.2  # [code] modality_level.py:51 (modality level)
    func: str = "linear"  # [code] dataset default (modality level)
    head_init: str = "torch"  # [code] sample_level.py applies no weight_init


# --------------------------------------------------------------------------- the algorithm
def coalitions(m: int) -> list[tuple[int, ...]]:
    """Every non-empty coalition of ``m`` modalities (index tuples), by size then order."""
    return [c for k in range(1, m + 1) for c in combinations(range(m), k)]


def shapley(correct: dict[tuple[int, ...], torch.Tensor], m: int, value: str = "size") -> torch.Tensor:
    """(N, M) exact Shapley values from ``correct[S]`` (N,) bool per non-empty coalition S:
    phi^k = sum_{S not containing k} |S|! (M - |S| - 1)! / M! (v(S + k) - v(S)), v(empty) = 0,
    v(S) = |S| correct[S] (``"size"``) or correct[S] (``"indicator"``)."""
    n = next(iter(correct.values())).shape[0]

    def v(s: tuple[int, ...]) -> torch.Tensor:
        if not s:
            return torch.zeros(n, dtype=torch.float64)
        c = correct[tuple(sorted(s))].double()
        return c * len(s) if value == "size" else c

    phi = torch.zeros(n, m, dtype=torch.float64)
    for k in range(m):
        others = [j for j in range(m) if j != k]
        for size in range(m):
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for s in combinations(others, size):
                phi[:, k] += weight * (v(s + (k,)) - v(s))
    return phi


def copies(phi: torch.Tensor) -> torch.Tensor:
    """Extra single-modality copies per (sample, modality) (``dataloader.py:156-186``): 1 if
    0.4 < phi < 1, 2 if -0.1 < phi < 0.4, 3 if phi < -0.1, else 0 (strict bounds)."""
    out = torch.zeros(phi.shape, dtype=torch.long)
    out[(phi > 0.4) & (phi < 1)] = 1
    out[(phi > -0.1) & (phi < 0.4)] = 2
    out[phi < -0.1] = 3
    return out


def sample_plan(n_copies: torch.Tensor) -> ItemPlan:
    """Every position once with all modalities, plus ``n_copies[i, m]`` copies keeping only m."""
    n, m = n_copies.shape
    positions = [torch.arange(n)]
    keep = [torch.ones(n, m, dtype=torch.bool)]
    for k in range(m):
        rep = torch.repeat_interleave(torch.arange(n), n_copies[:, k])
        positions.append(rep)
        one = torch.zeros(len(rep), m, dtype=torch.bool)
        one[:, k] = True
        keep.append(one)
    return ItemPlan(torch.cat(positions), torch.cat(keep))


def modality_level_extra(
    c_a: float, c_v: float, n: int, alpha: float = 1.0, func: str = "linear"
) -> tuple[int, int]:
    """(number of extra items int(d N), index of the modality they keep: the larger gap 1 - c)
    (``dataloader.py:297-316``)."""
    diff = abs((1 - c_a) - (1 - c_v)) * 2 / 3
    if func == "linear":
        d = diff * alpha
    elif func == "tanh":
        d = math.tanh(diff * alpha)
    elif func == "square":
        d = diff**1.5 * alpha
    else:
        raise ValueError(f"unknown func {func!r}")
    return int(d * n), (0 if (1 - c_a) > (1 - c_v) else 1)


# --------------------------------------------------------------------------- the method
@register_method
class Valuation(Method):
    name = "valuation"
    settings_toml = "valuation.toml"
    Hyper = ValuationHyper
    conformance_overrides = {"method.warmup": 1, "epochs": 3}

    def __init__(self, hyper, modalities, num_classes, feature_dims):
        super().__init__(hyper, modalities, num_classes, feature_dims)
        self.plan: ItemPlan | None = None
        self._last_phi: torch.Tensor | None = None

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        check_choices(params, _CHOICES)
        if params.get("level") == "modality" and len(spec.modalities) != 2:
            raise ConfigError(
                f"valuation level=modality supports exactly 2 modalities; {spec.name} has "
                f"{len(spec.modalities)}: {', '.join(spec.modalities)}"
            )
        if int(params.get("warmup", 5)) < 1:
            raise ConfigError(
                "method.warmup must be at least 1 (the first valuation is after epoch warmup - 1)"
            )

    def build_heads(self, feature_dims, num_classes):
        dims = [feature_dims[m] for m in self.modalities]
        return ConcatHead(dims, num_classes, self.modalities, init=self.hp.head_init)

    # ------------------------------------------------------------------ step
    def masked_features(self, model, batch, keep: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """phi^m, zeroed where ``keep`` drops m: after the encoder (``mask="feature"``) or on the
        raw input (``"input"``)."""
        if keep is None:
            return self.encode(model, batch)
        out = {}
        for i, m in enumerate(self.modalities):
            k = keep[:, i].view(-1, *([1] * (batch[m].dim() - 1)))
            if self.hp.mask == "input":
                out[m] = model.encoders[m](batch[m] * k.to(batch[m].dtype))
            else:
                f = model.encoders[m](batch[m])
                out[m] = f * keep[:, i : i + 1].to(f.dtype)
        return out

    def training_step(self, model, batch, ctx):
        y = batch["label"]
        keep = batch.get("keep")
        with ctx.autocast():
            feats = self.masked_features(model, batch, keep)
            logits = model.heads(feats)
            loss = F.cross_entropy(logits["fusion"].float(), y)
        ctx.optimizers.zero_grad()
        loss.backward()
        ctx.optimizers.step()
        out = {"loss": loss.detach(), **modality_accuracies(logits, y, self.modalities)}
        if keep is not None:
            ctx.log("single_modality_items", (keep.sum(1) == 1).float().mean())
        return out

    # ------------------------------------------------------------------ valuation
    def item_plan(self, ctx):
        return self.plan

    def coalition_correct(self, model, batch) -> dict[str, torch.Tensor]:
        """``{"c<mask>": correct (B,)}`` per non-empty coalition (full bias; ``models.py:74-86``)."""
        y = batch["label"]
        out = {}
        full = None if self.hp.mask == "input" else self.encode(model, batch)
        for s in coalitions(len(self.modalities)):
            keep = torch.zeros(len(y), len(self.modalities), dtype=torch.bool, device=y.device)
            keep[:, list(s)] = True
            if full is None:
                feats = self.masked_features(model, batch, keep)
            else:
                feats = {
                    m: full[m] * keep[:, i : i + 1].to(full[m].dtype) for i, m in enumerate(self.modalities)
                }
            z = model.heads.fc(torch.cat([feats[m] for m in self.modalities], 1))
            out["c" + "".join(map(str, s))] = z.float().argmax(1) == y
        return out

    def contributions(self, ctx) -> torch.Tensor:
        """(N, M) Shapley contributions of every training position (feature-pass order)."""
        res = ctx.feature_pass("train", lambda batch: self.coalition_correct(ctx.model, batch))
        correct = {s: res["c" + "".join(map(str, s))] for s in coalitions(len(self.modalities))}
        return shapley(correct, len(self.modalities), self.hp.value)

    def on_epoch_end(self, ctx):
        """The plan of epoch e + 1 from the valuation after epoch e (none before ``warmup`` - 1 and
        after the last epoch)."""
        self.plan = None
        if ctx.epoch < self.hp.warmup - 1 or ctx.epoch >= ctx.epochs - 1:
            return
        if self.hp.level == "sample":
            phi = self.contributions(ctx)
            self.plan = sample_plan(copies(phi))
        else:
            self.plan = self.modality_plan(ctx)
            phi = self._last_phi
        for i, m in enumerate(self.modalities):
            ctx.log_epoch(f"contribution_{m}", float(phi[:, i].mean()))
        ctx.log_epoch("plan_items", len(self.plan.positions))

    def modality_plan(self, ctx) -> ItemPlan:
        n = len(ctx.train_loader.dataset)
        gen = ctx.generator("valuation/modality_plan", index=ctx.epoch, device="cpu")  # the method's own stream
        subset = torch.randint(0, n, (int(self.hp.part_ratio * n),), generator=gen)
        phi = self.contributions(ctx)  # every sample valued, a subset averaged (as the code)
        self._last_phi = phi[subset]
        c = self._last_phi.mean(0)
        extra, k = modality_level_extra(float(c[0]), float(c[1]), n, self.hp.alpha, self.hp.func)
        drawn = torch.randint(0, n, (extra,), generator=gen)
        keep = torch.ones(n + extra, 2, dtype=torch.bool)
        keep[n:, 1 - k] = False
        return ItemPlan(torch.cat([torch.arange(n), drawn]), keep)

    def state_dict(self):
        return {"plan": None if self.plan is None else self.plan.state_dict()}

    def load_state_dict(self, state):
        self.plan = ItemPlan.from_state(state["plan"])
