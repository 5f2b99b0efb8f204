"""``opm``: On-the-fly Prediction Modulation (specs/methods/opm.md).

Wei, Hu, Du, Wen, "On-the-fly Modulation for Balanced Multimodal Learning", IEEE TPAMI 2024.
Official code GeWu-Lab/BML_TPAMI2024 @ 4b3aa4fd (``code/models/Classifier.py``, ``code/main.py``,
``code/scripts/train_opm.sh``). The plain concat model is trained with the fused cross-entropy
only; in the forward pass the currently dominant modality's features are dropped per sample:

1. confidence sums s^m = sum_i softmax(z^m_i)[y_i] of the undropped split logits z^m = W_m phi^m
   + b/2 (``Classifier.forward``, weights detached);
2. drop probabilities q^m = clip(q_base (1 + lam tanh(relu(s^m / s^o - 1))), 0, 1) where that
   ratio term is positive, else 0 (``calcu_q``): only the modality with the larger sum is dropped;
3. with probability ``p_exe`` the batch is modulated (``Modality_drop.execute_drop``:
   ``rand >= 1 - p_exe``), otherwise it is a plain joint step;
4. keep^m_i ~ Bernoulli(1 - q^m); every feature is multiplied by its keep and divided by
   1 - theta, theta = sum_m d_m q^m / sum_m d_m (``custom_autograd``: the gradient is scaled the
   same way); samples with no modality kept are removed, and a batch with none left takes no
   optimiser step (``main.py:96-97``);
5. L = CE(W [phi~^a; phi~^v] + b, y) over the kept samples, one backward, one step (the
   unimodal losses of ``main.py`` are computed for logging only).

Epochs ``0 .. warmup_epochs - 1`` are plain joint epochs (``warm_up = 1 if epoch <= 5``,
``main.py:91``). Evaluation never drops (``val`` calls the model with ``warm_up=1``).
``gradient_modulation = "ogm"`` adds the journal OGM gradient step (``ogm_tpami``) with the same
scores, as ``main.py`` does when ``--use_adam_drop`` and ``--use_modulation`` are given together.
The execution draw and the masks come from the run's method-owned streams ``"opm/execute"`` and
``"opm/masks"`` (the official code uses numpy's and torch's global generators), so a resumed run
draws the same masks. Two modalities only (``calcu_q`` is written for two).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mmbench.methods.base import TwoModalityMethod, modality_accuracies
from mmbench.methods.ogm_ge import confidence_scores
from mmbench.methods.ogm_tpami import tpami_active, tpami_coefficients, tpami_gradient_step
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError

_CHOICES = {
    "q_timing": ("same_step", "next_step"),
    "gradient_modulation": ("none", "ogm"),
    "modulation": ("OGM_GE", "OGM"),
    "param_scope": ("conv", "non_bias"),
}


@dataclass
class OPMHyper:
    q_base: float = 0.5  # [code] train_opm.sh, main.py:42 (config.py's 0.4 is overwritten by argparse)
    lam: float = 0.5  # [code] train_opm.sh, main.py:43
    p_exe: float = 0.7  # [code] train_opm.sh, main.py:44: probability that a batch is modulated
    warmup_epochs: int = 6  # [code] main.py:91: plain joint epochs 0..5
    # "same_step" (code): q from this batch's scores drops this batch; "next_step" (README figure):
    # the q of the previous modulated step (0 at the first)
    q_timing: str = "same_step"
    # "none" (train_opm.sh); "ogm": also the journal OGM gradient step (--use_modulation)
    gradient_modulation: str = "none"
    # the journal OGM's settings, used only with gradient_modulation = "ogm" (ogm_tpami's defaults)
    alpha: float = 0.8
    modulation: str = "OGM_GE"
    modulation_starts: int = 0
    modulation_ends: int = 60
    ogm_plus: bool = False
    plus_coeff: float = 4.0
    param_scope: str = "conv"


# --------------------------------------------------------------------------- the algorithm
def drop_probabilities(
    score_a: torch.Tensor, score_v: torch.Tensor, q_base: float, lam: float
) -> torch.Tensor:
    """(q^a, q^v) of ``calcu_q`` (``Classifier.py:58-72``): q^m = q_base (1 + lam r^m) where
    r^m = tanh(relu(s^m / s^o - 1)) > 0, else 0, clipped to [0, 1]. q jumps from 0 to q_base as
    soon as one sum exceeds the other; at an exact tie both are 0."""
    r = torch.stack(
        [torch.tanh(torch.relu(score_a / score_v - 1)), torch.tanh(torch.relu(score_v / score_a - 1))]
    )
    q = torch.where(r > 0, q_base * (1 + lam * r), torch.zeros_like(r))
    return q.clamp(0.0, 1.0)


def drop_rate(q: torch.Tensor, dims) -> torch.Tensor:
    """theta = sum_m d_m q^m / sum_m d_m, the dimension-weighted mean drop probability
    (``execute_drop``, ``Classifier.py:39-41``)."""
    d = torch.as_tensor(dims, dtype=q.dtype, device=q.device)
    return (d * q).sum() / d.sum()


def drop_features(feats: list[torch.Tensor], keep: torch.Tensor, theta: torch.Tensor):
    """(phi~ per modality, rows kept): phi~^m_i = keep[i, m] phi^m_i / (1 - theta) for every
    modality, and the rows with at least one modality kept (``execute_drop``, ``:45-54``)."""
    scale = 1.0 / (1.0 - theta)
    dropped = [f * (keep[:, j : j + 1].to(f.dtype) * scale).to(f.dtype) for j, f in enumerate(feats)]
    return dropped, keep.any(dim=1)


# --------------------------------------------------------------------------- the method
@register_method
class OPM(TwoModalityMethod):
    name = "opm"
    settings_toml = "opm.toml"
    Hyper = OPMHyper
    choices = _CHOICES
    epoch_windows = (("modulation_starts", "modulation_ends"),)

    @classmethod
    def validate_params(cls, params, spec):
        """Two modalities only (the official code's two encoders)."""
        if len(spec.modalities) != 2:
            raise ConfigError(
                f"{cls.name} supports exactly 2 modalities; {spec.name} has {len(spec.modalities)}: "
                f"{', '.join(spec.modalities)}"
            )
        super().validate_params(params, spec)

    def __init__(self, hyper, modalities, num_classes, feature_dims):
        super().__init__(hyper, modalities, num_classes, feature_dims)
        self._q_prev: torch.Tensor | None = None  # q_timing = "next_step": the last modulated step's q

    def training_step(self, model, batch, ctx):
        """Spec §3: scores from the undropped split logits, q, the batch-level execution draw,
        per-sample masks, rescaling, fused CE over the kept samples; a batch with no sample left
        is skipped (``ctx.skip_step``)."""
        a, v = self.modalities
        y = batch["label"]
        warm = ctx.epoch < self.hp.warmup_epochs
        with ctx.autocast():
            feats = self.encode(model, batch)
            with torch.no_grad():
                split = model.heads.split_logits({m: feats[m].detach() for m in self.modalities})
                scores = confidence_scores(split, y, self.modalities)
                q_now = drop_probabilities(scores[a], scores[v], self.hp.q_base, self.hp.lam)
            q = q_now
            if self.hp.q_timing == "next_step" and not warm:
                q = self._q_prev.to(q_now.device) if self._q_prev is not None else torch.zeros_like(q_now)
                self._q_prev = q_now
            # the batch-level draw on the host (the official np.random.rand): no device sync
            executed = not warm and bool(
                torch.rand((), generator=ctx.generator("opm/execute", device="cpu")) >= 1 - self.hp.p_exe
            )
            theta = (
                drop_rate(q, [self.feature_dims[a], self.feature_dims[v]]) if executed else q.new_zeros(())
            )
            x = [feats[a], feats[v]]
            if executed:
                u = torch.rand(y.numel(), 2, generator=ctx.generator("opm/masks"), device=y.device)
                keep = u < (1 - q).to(u.dtype)  # keep^m_i ~ Bernoulli(1 - q^m)
                x, rows = drop_features(x, keep, theta)
                if not bool(rows.all()):  # reachable only when both q > 0
                    if not bool(rows.any()):
                        ctx.skip_step()
                        ctx.log("executed", 1.0)
                        return {}
                    x, y = [f[rows] for f in x], y[rows]
            logits = model.heads.fc(torch.cat(x, dim=1))
            loss = F.cross_entropy(logits.float(), y)
        ctx.optimizers.zero_grad()
        loss.backward()
        if self.hp.gradient_modulation == "ogm":
            if tpami_active(self.hp, ctx.epoch):
                gen = ctx.generator("opm/ogm_noise") if self.hp.modulation == "OGM_GE" else None
                k_a, k_v = tpami_gradient_step(model, self.modalities, scores, self.hp, gen)
            else:
                k_a, k_v = tpami_coefficients(
                    scores[a], scores[v], self.hp.alpha, self.hp.ogm_plus, self.hp.plus_coeff
                )
            ctx.log(f"coeff_{a}", k_a)
            ctx.log(f"coeff_{v}", k_v)
        ctx.optimizers.step()

        n = batch["label"].numel()
        ctx.log(f"q_{a}", q[0])
        ctx.log(f"q_{v}", q[1])
        ctx.log("theta", theta)
        ctx.log("executed", float(executed))
        ctx.log(f"score_{a}", scores[a] / n)
        ctx.log(f"score_{v}", scores[v] / n)
        return {"loss": loss.detach(), **modality_accuracies(split, batch["label"], self.modalities)}

    def state_dict(self) -> dict:
        return {"q_prev": None if self._q_prev is None else self._q_prev.detach().cpu().tolist()}

    def load_state_dict(self, state: dict) -> None:
        q = state.get("q_prev")
        self._q_prev = None if q is None else torch.tensor(q, dtype=torch.float32)
