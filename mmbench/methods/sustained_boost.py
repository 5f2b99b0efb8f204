"""``sustained_boost``: AUG, sustained boosting with adaptive classifier assignment.

Jiang, Huang, Yang, "Rethinking Multimodal Learning from the Perspective of Mitigating
Classification Ability Disproportion", NeurIPS 2025, arXiv 2502.20120 v1. Official code
njustkmg/NeurIPS25-AUG at commit 966dbf5 (``train_CREMAD.py``, ``train_KS.py``,
``train_NVGesture.py``, ``model/AudioVideo.py``), which matches v1 (learnable weight network g_w).

Each modality o owns classifiers z^o_t = fc_out(ReLU(L1^{o,t}(phi^o))), with ONE ``fc_out`` shared by
all of them, and the ensemble F^o_t = z^o_1 + w^o sum_{j=2..t} z^o_j (official ``model/AudioVideo.py``). Sustained boosting
trains the newest classifier on a residual target together with the whole and the previous
ensemble (eqs. 2-6); every modality has its own backward pass and optimiser step, in dataset
order, then g_w takes one more step. Adaptive classifier assignment (ACA) adds a
classifier to the less confident modality every t_N epochs (and after epoch 0); additions are
applied at the start of the next epoch, with their parameters appended to the optimiser.

Ablation switches for the paper's Tables 4-6 and the paper/code differences are hyper-parameters;
pure functions below (``sub_loss``, ``running_ratio``, ``weight_targets``,
``aca_two``, ``aca_many``, ``check_epochs``, ``fuse``) carry the numerics the tests check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.methods.base import Method, Optimizers, build_optimizer, build_scheduler, check_choices
from mmbench.methods.heads import xavier_linear
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError

LOSS_TERMS = ("residual", "ensemble", "previous")


@dataclass
class SustainedBoostHyper:
    smoothing: float = 0.2  # lambda of the residual label (eq. 2) [code] 966dbf5 (HEAD: 0.5)
    sigma: float = 1.0  # ACA ratio threshold; the official `--lam` flag [code, paper v2]
    tau: float = 0.01  # ACA dead zone around sigma [code, paper v2]
    rho_min: float | None = None  # M > 2: add where S^m / sum_{k!=m} S^k < rho_min; None = 0.8 / (M - 1)
    target_threshold: float | None = None  # M > 2: g_w target 1[r^m <= thr]; None = 1 / (M - 1)
    t_N: int = 0  # ACA check interval in epochs; 0 = epochs // 10, at least 1 [code]
    weight_net: str = "learnable"  # learnable (v1, code 966dbf5) | fixed | off (v2, HEAD)
    weight_value: float = 0.5  # w^o when weight_net = "fixed" [paper v1 ablation]
    weight_net_lr_factor: float = 0.1  # g_w's learning rate is lr * factor [code]
    fusion_weights: dict = field(default_factory=dict)  # {modality: a_o}; {} = equal [guess]
    hidden_dim: int = 256  # width of every L1 [code]
    # [code] False: the official optimiser is built once, so classifiers ACA adds are never
    # optimised (966dbf5 train_CREMAD.py, train_NVGesture.py); True = the paper's text
    train_added_layers: bool = False
    # "xavier": xavier-normal / zero bias (train_CREMAD.py model.apply(weight_init)); "torch":
    # PyTorch's default (train_NVGesture.py never applies weight_init); added L1s are always xavier
    head_init: str = "xavier"
    residual_target: str = "ensemble_softmax"  # [code]; "sum_probs" = v2 text
    aca_rule: str = "ratio"  # [code]; "difference" = v2 text
    aca_first_check: bool = True  # [code] also checks after epoch 0
    zero_grad_mode: str = "zeros"  # [code] on torch 1.11; "none" = torch >= 2 default
    loss_terms: list = field(default_factory=lambda: list(LOSS_TERMS))  # ablation (Table 4)
    assignment: str = "adaptive"  # adaptive (ACA) | fixed (Table 5)
    fixed_classifiers: dict = field(default_factory=dict)  # assignment = "fixed": {modality: n}
    log_first_classifier: bool = False  # diagnostic (paper Fig. 4): predict adds "<m>_first" = z^m_1


# ---------------------------------------------------------------------------- numerics
def sub_loss(
    z: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor | float,
    smoothing: float,
    terms=LOSS_TERMS,
    residual_target: str = "ensemble_softmax",
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """Sustained-boosting loss of one modality (paper eqs. 1-6; official ``train_CREMAD.py``).

    ``z``: (n, B, K) logits of the modality's n classifiers (classifier 1 first); ``w``: the scalar
    weight of classifiers 2..n. Returns ``(L, parts, F_n)``: the summed loss, its terms
    ``eps`` / ``eps_all`` / ``eps_pre`` (batch means) and the ensemble logits F_n.

    n = 1: L = CE(z_1, y) (eq. 1), whatever ``terms``. n >= 2, F_t = z_1 + w sum_{j=2..t} z_j:
    eps = mean l(w z_n, yhat), yhat = y - lambda y P with P = softmax(F_{n-1}) detached
    (``ensemble_softmax``, code) or P = sum_{j<n} softmax(z_j) (``sum_probs``, v2 text; the
    classifiers' own predictions, unweighted). yhat has one non-zero entry, so
    l(z, yhat) = (1 - lambda P_y) l(z, y), not renormalised, not clamped.
    eps_all = mean l(F_n, y) (eq. 3), eps_pre = mean l(F_{n-1}, y) (eq. 4); L sums ``terms`` (eq. 6).
    """
    n = z.shape[0]
    if n == 1:
        loss = F.cross_entropy(z[0], y)
        return loss, {}, z[0]
    f_prev = z[0]
    for j in range(1, n - 1):
        f_prev = f_prev + w * z[j]
    wz_new = w * z[n - 1]
    f_n = f_prev + wz_new
    idx = y[:, None]
    parts: dict[str, torch.Tensor] = {}
    if "residual" in terms:
        if residual_target == "ensemble_softmax":
            p_y = f_prev.detach().softmax(1).gather(1, idx).squeeze(1)
        else:  # sum_probs
            p_y = z[: n - 1].detach().softmax(2).gather(2, idx.expand(n - 1, -1, -1)).sum(0).squeeze(1)
        weight = 1.0 - smoothing * p_y
        parts["eps"] = (weight * F.cross_entropy(wz_new, y, reduction="none")).mean()
    if "ensemble" in terms:
        parts["eps_all"] = F.cross_entropy(f_n, y)
    if "previous" in terms:
        parts["eps_pre"] = F.cross_entropy(f_prev, y)
    loss = sum(parts.values())
    return loss, parts, f_n


def confidence(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sum_i softmax(F(x_i))[y_i] (the official per-sample loop, batched)."""
    return logits.detach().float().softmax(1).gather(1, y[:, None]).sum()


def running_ratio(tmp: torch.Tensor, S: torch.Tensor, t: int) -> torch.Tensor:
    """r^o from the batch scores ``tmp`` and the epoch sums ``S`` (already including ``tmp``) at
    step ``t``: R = tmp / (t+1) + S t / (t+1). 2 modalities: r^a = R^a / R^v,
    r^v = 1 / r^a (code); M: r^m = R^m / sum_{k != m} R^k (``train_NVGesture.py``)."""
    R = tmp / (t + 1) + S * (t / (t + 1))
    if R.numel() == 2:
        r_a = R[0] / R[1]
        return torch.stack([r_a, 1.0 / r_a])
    return R / (R.sum() - R)


def weight_targets(r: torch.Tensor, threshold: float) -> torch.Tensor:
    """g_w's MSE targets c: 2 modalities c^a = 1[r^a <= 1], c^v = 1 - c^a (code: ``s_a > 1`` gives
    audio 0); M modalities c^m = 1[r^m <= threshold] (0.5 on NVGesture; 0.5 counts as weaker)."""
    if r.numel() == 2:
        c_a = (r[0] <= 1.0).to(r.dtype)
        return torch.stack([c_a, 1.0 - c_a])
    return (r <= threshold).to(r.dtype)


def weight_net_loss(w_out: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """g_w's loss (code ``criterion2 = nn.MSELoss()``): mean_o (g_w(r_old^o) - c^o)^2."""
    return F.mse_loss(w_out, c)


def aca_two(s_first: float, s_second: float, sigma: float, tau: float, rule: str = "ratio", n_train: int = 1):
    """ACA for 2 modalities on the epoch sums: 1 = add to the second modality, 0 = to the first,
    None = no addition. ``ratio`` (code): rho = S^1 / S^2 > sigma + tau -> second;
    rho < sigma - tau -> first. ``difference`` (v2 text) on mean scores s = S / N_train:
    s^1 - sigma s^2 > tau -> second; < -tau -> first."""
    if rule == "ratio":
        rho = s_first / s_second
        if rho > sigma + tau:
            return 1
        if rho < sigma - tau:
            return 0
        return None
    diff = s_first / n_train - sigma * s_second / n_train
    if diff > tau:
        return 1
    if diff < -tau:
        return 0
    return None


def aca_many(S: list[float], rho_min: float) -> list[int]:
    """ACA for M > 2 (``train_NVGesture.py``): every m with S^m / sum_{k != m} S^k < rho_min."""
    total = sum(S)
    return [i for i, s in enumerate(S) if s / (total - s) < rho_min]


def resolve_t_n(t_n: int, epochs: int) -> int:
    """The check interval: ``t_N`` if set, else ``int(epochs / 10)`` when epochs > 10, else 1 (code)."""
    if t_n > 0:
        return t_n
    return epochs // 10 if epochs > 10 else 1


def is_check_epoch(epoch: int, t_n: int, first_check: bool = True) -> bool:
    """ACA runs after 0-indexed epoch e when (e + 1) % t_N == 0, and after e = 0 (code)."""
    return (first_check and epoch == 0) or (epoch + 1) % t_n == 0


def check_epochs(epochs: int, t_n: int = 0, first_check: bool = True) -> list[int]:
    t_n = resolve_t_n(t_n, epochs)
    return [e for e in range(epochs) if is_check_epoch(e, t_n, first_check)]


def fuse(logits: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """Inference fusion on logits (code ``val``): sum_o a_o F^o."""
    return sum(weights[m] * logits[m] for m in weights)


# ---------------------------------------------------------------------------- heads
class WeightNet(nn.Module):
    """g_w: Linear(1, 512)-ReLU-Linear(512, 64)-ReLU-Linear(64, 1)-Sigmoid (``model/AudioVideo.py``
    ``w_network``), shared by the modalities, applied to each scalar r^o; xavier-normal / zero bias
    as the official ``weight_init``."""

    def __init__(self, init: str = "xavier"):
        super().__init__()
        self.net = nn.Sequential(
            xavier_linear(1, 512, init),
            nn.ReLU(),
            xavier_linear(512, 64, init),
            nn.ReLU(),
            xavier_linear(64, 1, init),
            nn.Sigmoid(),
        )

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.net(r.reshape(-1, 1)).reshape(-1)


class BoostedClassifiers(nn.Module):
    """Growing per-modality classifiers with a shared ``fc_out`` (``AVGBShareClassifier``).

    ``first[m]`` is L1 of classifier 1, ``added[m][j]`` L1 of classifier j + 2, ``fc_out`` the
    shared Linear(hidden, K), ``weight_net`` g_w (None unless learnable)."""

    def __init__(self, feature_dims, modalities, num_classes, hidden_dim, counts, learnable_weights, init="xavier"):
        super().__init__()
        self.modalities = tuple(modalities)
        self.feature_dims = {m: int(feature_dims[m]) for m in self.modalities}
        self.hidden_dim = hidden_dim
        self.first = nn.ModuleDict(
            {m: xavier_linear(self.feature_dims[m], hidden_dim, init) for m in self.modalities}
        )
        self.fc_out = xavier_linear(hidden_dim, num_classes, init)
        self.weight_net = WeightNet(init) if learnable_weights else None
        self.added = nn.ModuleDict({m: nn.ModuleList() for m in self.modalities})
        for m in self.modalities:
            for _ in range(counts.get(m, 1) - 1):
                self.add_classifier(m)

    def count(self, m: str) -> int:
        return 1 + len(self.added[m])

    def add_classifier(self, m: str) -> nn.Linear:
        """A new L1 (xavier-normal weight, zero bias, drawn now), as the official ``add_layer``."""
        ref = self.fc_out.weight
        layer = xavier_linear(self.feature_dims[m], self.hidden_dim).to(device=ref.device, dtype=ref.dtype)
        self.added[m].append(layer)
        return layer

    def classifier_logits(self, m: str, feat: torch.Tensor) -> torch.Tensor:
        """(n, B, K): z^m_1..z^m_n, one L1 per classifier and one batched ``fc_out``."""
        hidden = [F.relu(self.first[m](feat))] + [F.relu(layer(feat)) for layer in self.added[m]]
        return self.fc_out(torch.stack(hidden))

    def forward(self, feats: dict[str, torch.Tensor], weights: dict[str, torch.Tensor | float]):
        """Ensemble logits F^m = z_1 + w^m sum_{j>=2} z_j of every modality in ``feats``."""
        out = {}
        for m, feat in feats.items():
            z = self.classifier_logits(m, feat)
            out[m] = z[0] if z.shape[0] == 1 else z[0] + weights[m] * z[1:].sum(0)
        return out


# ---------------------------------------------------------------------------- the method
@register_method
class SustainedBoost(Method):
    name = "sustained_boost"
    settings_toml = "sustained_boost.toml"
    Hyper = SustainedBoostHyper
    modality_logits = "the modality's classifier ensemble F^m = z_1 + w^m sum_j z_j"
    fusion_logits = "sum_o a_o F^o of the modality ensembles"

    def __init__(self, hyper, modalities, num_classes, feature_dims):
        super().__init__(hyper, modalities, num_classes, feature_dims)
        self.terms = tuple(normalise_terms(hyper.loss_terms))
        M = len(self.modalities)
        self.rho_min = hyper.rho_min if hyper.rho_min is not None else 0.8 / (M - 1)
        self.target_threshold = (
            hyper.target_threshold if hyper.target_threshold is not None else 1.0 / (M - 1)
        )
        fw = hyper.fusion_weights or {m: 1.0 / M for m in self.modalities}
        self.fusion_weights = {m: float(fw[m]) for m in self.modalities}
        if hyper.assignment == "fixed":
            initial = {m: int(hyper.fixed_classifiers.get(m, 1)) for m in self.modalities}
        else:
            initial = {m: 1 for m in self.modalities}
        self.initial = initial  # classifiers built before the optimiser (always optimised)
        self.counts = dict(initial)
        self.additions: list[str] = []  # modalities that got a classifier, in order (optimiser order)
        self.pending: list[str] = []  # decided at a check, applied at the next epoch start
        self._r = torch.zeros(M)  # running ratios r^o; persist across epochs, start at 0 (code)
        self._S = torch.zeros(M)  # epoch sums of confidence scores
        self._n_seen = 0
        self._last_check: dict | None = None
        self._w_log: list[float] = [float("nan")] * M  # w^o at the end of the epoch (what predict used)

    # ------------------------------------------------------------------ configuration
    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        mods = tuple(spec.modalities)
        if len(mods) < 2:
            raise ConfigError(f"sustained_boost needs at least 2 modalities; {spec.name} has {len(mods)}")
        choices = {
            "weight_net": ("learnable", "fixed", "off"),
            "residual_target": ("ensemble_softmax", "sum_probs"),
            "aca_rule": ("ratio", "difference"),
            "zero_grad_mode": ("zeros", "none"),
            "assignment": ("adaptive", "fixed"),
            "head_init": ("xavier", "torch"),
        }
        check_choices(params, choices)
        normalise_terms(params["loss_terms"])
        if params["aca_rule"] == "difference" and len(mods) > 2:
            raise ConfigError("method.aca_rule=difference is defined for 2 modalities only; use ratio")
        if params["t_N"] < 0 or params["hidden_dim"] < 1 or params["smoothing"] < 0:
            raise ConfigError("method.t_N must be >= 0, method.hidden_dim >= 1 and method.smoothing >= 0")
        for key in ("fusion_weights", "fixed_classifiers"):
            value = params[key]
            if not isinstance(value, dict):
                raise ConfigError(f"method.{key} must be a dict such as {{{mods[0]!r}: 1, {mods[1]!r}: 3}}")
            unknown = set(value) - set(mods)
            if unknown:
                raise ConfigError(
                    f"method.{key}: unknown modalities {sorted(unknown)}; {spec.name} has {', '.join(mods)}"
                )
        if params["fusion_weights"] and set(params["fusion_weights"]) != set(mods):
            raise ConfigError(
                f"method.fusion_weights must give a weight to each of {', '.join(mods)} (or be {{}})"
            )
        if any(int(n) < 1 for n in params["fixed_classifiers"].values()):
            raise ConfigError("method.fixed_classifiers: every modality needs at least 1 classifier")
        if params["fixed_classifiers"] and params["assignment"] != "fixed":
            raise ConfigError("method.fixed_classifiers needs method.assignment=fixed")

    def build_heads(self, feature_dims, num_classes):
        return BoostedClassifiers(
            feature_dims,
            self.modalities,
            num_classes,
            self.hp.hidden_dim,
            self.counts,
            learnable_weights=self.hp.weight_net == "learnable",
            init=self.hp.head_init,
        )

    def _optimised_layers(self, heads: BoostedClassifiers) -> list[nn.Module]:
        """Classifiers 2.. in optimiser order: those built at initialisation, then the ACA
        additions in the order they were made (only with ``train_added_layers``)."""
        layers = [heads.added[m][j] for m in self.modalities for j in range(self.initial[m] - 1)]
        if self.hp.train_added_layers:
            seen = {m: self.initial[m] - 1 for m in self.modalities}
            for m in self.additions:
                layers.append(heads.added[m][seen[m]])
                seen[m] += 1
        return layers

    def configure_optimizers(self, model, train_cfg):
        """One optimiser, two groups (code): everything but g_w at lr, g_w at lr * factor."""
        heads = model.heads
        base = [p for m in self.modalities for p in model.encoders[m].parameters()]
        base += [p for m in self.modalities for p in heads.first[m].parameters()]
        base += list(heads.fc_out.parameters())
        base += [p for layer in self._optimised_layers(heads) for p in layer.parameters()]
        groups = [{"params": base}]
        if heads.weight_net is not None:
            lr = train_cfg.lr * self.hp.weight_net_lr_factor
            groups.append({"params": list(heads.weight_net.parameters()), "lr": lr})
        opt = build_optimizer(groups, train_cfg)
        sched = build_scheduler(opt, train_cfg)
        return Optimizers({"main": opt}, {"main": sched} if sched is not None else {})

    # ------------------------------------------------------------------ weights
    def _weights(self, heads: BoostedClassifiers, r: torch.Tensor) -> torch.Tensor:
        """w^o for every modality: g_w(r^o) (learnable, no grad), ``weight_value`` or 1."""
        if self.hp.weight_net == "learnable":
            with torch.no_grad(), torch.autocast(r.device.type, enabled=False):
                return heads.weight_net(r.float())
        value = self.hp.weight_value if self.hp.weight_net == "fixed" else 1.0
        return torch.full((len(self.modalities),), float(value), device=r.device)

    def _to(self, device) -> None:
        if self._r.device != device:
            self._r = self._r.to(device)
            self._S = self._S.to(device)

    # ------------------------------------------------------------------ steps
    def training_step(self, model, batch, ctx):
        """Spec §3, in the official order: g_w(r_old) without grad; all encoders forward; per
        modality: ensemble, loss, backward, optimiser step, zero_grad; running ratio; one MSE step
        of g_w on r_old; then every gradient is set to None (the code's ``del p.grad``)."""
        y = batch["label"]
        heads = model.heads
        opt = ctx.optimizers["main"]
        self._to(y.device)
        r_old = self._r
        w = self._weights(heads, r_old)
        set_to_none = self.hp.zero_grad_mode == "none"
        with ctx.autocast():
            feats = self.encode(model, batch)
        out: dict = {}
        tmp = []
        total = 0.0
        for i, m in enumerate(self.modalities):
            with ctx.autocast():
                z = heads.classifier_logits(m, feats[m])
            loss, _, f_n = sub_loss(
                z.float(), y, w[i], self.hp.smoothing, self.terms, self.hp.residual_target
            )
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=set_to_none)
            tmp.append(confidence(f_n, y))
            total = total + self.fusion_weights[m] * loss.detach()
            out[f"loss_{m}"] = loss.detach()
            out[f"acc_{m}"] = (f_n.detach().argmax(1) == y).float().mean()
        tmp = torch.stack(tmp)
        self._S = self._S + tmp
        self._n_seen += int(y.shape[0])
        self._r = running_ratio(tmp, self._S, ctx.step_in_epoch)
        if heads.weight_net is not None:
            c = weight_targets(self._r, self.target_threshold)
            loss_w = weight_net_loss(heads.weight_net(r_old.float()), c)
            loss_w.backward()
            opt.step()
            out["loss_w"] = loss_w.detach()
        for p in model.parameters():
            p.grad = None
        out["loss"] = total  # a-weighted, logged only (never backpropagated)
        return out

    @torch.no_grad()
    def predict(self, model, batch):
        """``{"fusion": sum_o a_o F^o, o: F^o}`` with w^o = g_w(r^o) from the current state.

        With ``log_first_classifier`` also ``"<o>_first"``: the logits z^o_1 of the modality's first
        classifier alone (paper Fig. 4: full prediction vs the first classifier); the other outputs
        and training are unchanged."""
        feats = self.encode(model, batch)
        device = next(iter(feats.values())).device
        self._to(device)
        w = self._weights(model.heads, self._r)
        ens = model.heads(feats, {m: w[i] for i, m in enumerate(self.modalities)})
        out = {"fusion": fuse(ens, self.fusion_weights), **ens}
        if self.hp.log_first_classifier:
            heads = model.heads
            out.update({f"{m}_first": heads.fc_out(F.relu(heads.first[m](feats[m]))) for m in self.modalities})
        return out

    # ------------------------------------------------------------------ ACA hooks
    def on_epoch_start(self, ctx):
        """Apply the additions decided at the last check (new L1s join the base param group)."""
        heads = ctx.model.heads
        for m in self.pending:
            layer = heads.add_classifier(m)
            self.counts[m] += 1
            self.additions.append(m)
            if self.hp.train_added_layers:
                ctx.optimizers["main"].param_groups[0]["params"].extend(layer.parameters())
        self.pending = []
        self._S = torch.zeros_like(self._S)
        self._n_seen = 0

    def on_epoch_end(self, ctx):
        """After evaluation: at check epochs decide which modalities get a classifier."""
        self._last_check = None
        self._w_log = self._weights(ctx.model.heads, self._r.to(ctx.device)).tolist()
        if self.hp.assignment != "adaptive":
            return
        t_n = resolve_t_n(self.hp.t_N, ctx.epochs)
        if not is_check_epoch(ctx.epoch, t_n, self.hp.aca_first_check):
            return
        S = self._S.tolist()
        if len(self.modalities) == 2:
            which = aca_two(S[0], S[1], self.hp.sigma, self.hp.tau, self.hp.aca_rule, max(self._n_seen, 1))
            chosen = [] if which is None else [self.modalities[which]]
        else:
            chosen = [self.modalities[i] for i in aca_many(S, self.rho_min)]
        self.pending = chosen
        self._last_check = {"epoch": ctx.epoch, "added": list(chosen)}

    def epoch_diagnostics(self):
        S = self._S.tolist()
        r = self._r.tolist()
        w = self._w_log
        mods = self.modalities
        if len(mods) == 2:
            ratio = S[0] / S[1] if S[1] else float("nan")
        else:
            total = sum(S)
            ratio = {m: s / (total - s) if total - s else float("nan") for m, s in zip(mods, S)}
        return {
            "classifiers": dict(self.counts),
            "confidence": dict(zip(mods, S)),
            "confidence_ratio": ratio,
            "running_ratio": dict(zip(mods, r)),
            "weights": dict(zip(mods, w)),
            "aca_check": self._last_check is not None,
            "pending_additions": list(self.pending),
        }

    # ------------------------------------------------------------------ state
    def state_dict(self):
        return {
            "counts": dict(self.counts),
            "initial": dict(self.initial),
            "additions": list(self.additions),
            "pending": list(self.pending),
            "r": self._r.tolist(),
            "S": self._S.tolist(),
            "n_seen": self._n_seen,
            "last_check": self._last_check,
        }

    def load_state_dict(self, state):
        self.counts = dict(state["counts"])
        self.initial = dict(state["initial"])
        self.additions = list(state["additions"])
        self.pending = list(state["pending"])
        self._r = torch.tensor(state["r"], dtype=torch.float32)
        self._S = torch.tensor(state["S"], dtype=torch.float32)
        self._n_seen = int(state["n_seen"])
        self._last_check = state.get("last_check")


def normalise_terms(value) -> list[str]:
    """``loss_terms`` as a list: a list/tuple/set, or a comma-separated string."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple, set)) or not value:
        raise ConfigError(
            f"method.loss_terms must be a non-empty list drawn from {list(LOSS_TERMS)}; got {value!r}"
        )
    unknown = set(value) - set(LOSS_TERMS)
    if unknown:
        raise ConfigError(
            f"method.loss_terms: unknown terms {sorted(unknown)}; choose from {list(LOSS_TERMS)}"
        )
    return [t for t in LOSS_TERMS if t in value]
