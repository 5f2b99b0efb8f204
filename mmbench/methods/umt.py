"""``umt``: Uni-Modal Teacher (specs/methods/umt.md).

Du, Teng, Li, Liu, Yuan, Wang, Yuan, Zhao, "On Uni-Modal Feature Learning in Supervised
Multi-Modal Learning", ICML 2023 (arXiv 2305.01233; earlier arXiv 2106.11059, "Improving
Multi-Modal Learning with Uni-Modal Teachers"). Late-fusion joint training under-learns the
features each modality learns alone; UMT adds a distillation term pulling each encoder's features
towards those of a frozen, separately trained uni-modal teacher.

No official code is public. The loss form follows the only implementation, BalanceBenchmark's
port (GeWu-Lab/BalanceBenchmark @ 4c1482fca5aaa8d4278af8e26020daa039e3ccf3,
``balancemm/trainer/UMT_trainer.py`` ``UMTTrainer.training_step``, lines 139-150; ``scaling: 10``
in ``configs/trainer_config.yaml:62-66``), one backward per step:

    L = CE(z, y) + lam * sum_m mean_{i,j} (phi^m_ij - phi_hat^m_ij)^2

z = the concat head (as ``joint``), phi^m = student encoder m's pooled features (the concat
head's input), phi_hat^m = teacher encoder m on the same augmented batch, without gradient
(``nn.MSELoss()``, ``UMT_trainer.py:144``). The teachers are the selected encoders of the
``unimodal`` reference runs of the same dataset, preset and seed, handed over by the harness on
every start and resume (``needs_unimodal_teachers``, ``mmbench.benchmark.unimodal_init``) as
frozen copies in eval mode, never inside ``model``. Teachers are not used by ``predict``.

Flags (all [guess], no official code; defaults as BalanceBenchmark where it has one):
- ``distill_reduction``: ``"mean"`` over batch and features (``nn.MSELoss()``) | ``"sum"`` over
  features, mean over the batch (d_m times larger);
- ``teacher_mode``: ``"eval"`` | ``"train"`` (BalanceBenchmark never switches its teachers to eval
  mode, ``UMT_trainer.py:43-50``: BN uses batch statistics and its running statistics drift; they
  are then kept in ``state_dict`` so a resumed run equals an uninterrupted one);
- ``student_init``: ``"scratch"`` | ``"teacher"`` (the student encoders also start from the
  teachers' weights; fresh runs only);
- ``lam``: the distillation weight (BalanceBenchmark ``scaling``).
BalanceBenchmark distils in epochs 0..80 only (``modulation_starts/ends``); with the benchmark's
budgets the default here is every epoch. Any number of modalities.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mmbench.methods.base import Method, check_choices, modality_accuracies
from mmbench.methods.heads import ConcatHead
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError

_CHOICES = {
    "distill_reduction": ("mean", "sum"),
    "teacher_mode": ("eval", "train"),
    "student_init": ("scratch", "teacher"),
}


@dataclass
class UMTHyper:
    lam: float = 10.0  # [guess] BalanceBenchmark trainer_config.yaml:66 scaling: 10
    distill_reduction: str = "mean"  # [guess] BalanceBenchmark nn.MSELoss(); "sum" per-sample squared L2
    teacher_mode: str = "eval"  # [guess] "train" = BalanceBenchmark (teachers never set to eval)
    student_init: str = "scratch"  # [guess] BalanceBenchmark; "teacher" starts the student from the teachers
    head_init: str = "xavier"  # the concat head of joint (OGM-GE weight_init)
    unimodal_suffix: str = ""  # teachers from unimodal-<m>_<suffix> (their tag) instead of the default lookup


# --------------------------------------------------------------------------- the algorithm
def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """mean_{i,j} (phi_ij - phi_hat_ij)^2 (``nn.MSELoss()``, ``UMT_trainer.py:144``), or with
    ``"sum"`` sum_j (phi_ij - phi_hat_ij)^2 averaged over the batch."""
    if reduction == "mean":
        return F.mse_loss(student, teacher)
    if reduction == "sum":
        return (student - teacher).pow(2).flatten(1).sum(1).mean()
    raise ValueError(f"unknown distill_reduction {reduction!r}; choose mean or sum")


def umt_loss(ce: torch.Tensor, distill: dict[str, torch.Tensor], lam: float) -> torch.Tensor:
    """L = CE(z, y) + lam * sum_m distill_m (``UMT_trainer.py:139-150``)."""
    return ce + lam * sum(distill.values())


# --------------------------------------------------------------------------- the method
@register_method
class UMT(Method):
    name = "umt"
    settings_toml = "umt.toml"
    Hyper = UMTHyper
    needs_unimodal_teachers = True

    def __init__(self, hyper, modalities, num_classes, feature_dims):
        super().__init__(hyper, modalities, num_classes, feature_dims)
        self.teachers: dict[str, torch.nn.Module] | None = None
        self._teacher_buffers: dict | None = None  # teacher_mode="train": BN statistics to restore

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        check_choices(params, _CHOICES)
        if not params.get("lam", 0) >= 0:
            raise ConfigError(f"method.lam must be >= 0, got {params.get('lam')!r}")

    @classmethod
    def uses_unimodal_init(cls, params):
        return params.get("student_init") == "teacher"

    def build_heads(self, feature_dims, num_classes):
        return ConcatHead(
            [feature_dims[m] for m in self.modalities], num_classes, self.modalities, init=self.hp.head_init
        )

    def init_from_unimodal(self, model, weights):
        """``student_init = "teacher"``: the student encoders start from the teachers' weights."""
        for m in self.modalities:
            model.encoders[m].load_state_dict(weights[m]["encoder"])

    def set_teachers(self, teachers):
        """Frozen teachers from the harness; in ``teacher_mode = "train"`` switched to train mode
        (BalanceBenchmark) with the BN statistics of a resumed run restored."""
        self.teachers = teachers
        if self.hp.teacher_mode == "train":
            for m, t in teachers.items():
                t.train()
                if self._teacher_buffers is not None:
                    saved = self._teacher_buffers[m]
                    for k, buf in t.named_buffers():
                        buf.copy_(saved[k])

    def training_step(self, model, batch, ctx):
        """L = CE(z, y) + lam sum_m MSE(phi^m, phi_hat^m); one backward, one step."""
        if self.teachers is None:
            raise ConfigError("umt has no teachers: the harness hands them over (needs_unimodal_teachers)")
        y = batch["label"]
        with ctx.autocast():
            feats = self.encode(model, batch)
            logits = model.heads(feats)
            with torch.no_grad():
                targets = {m: self.teachers[m](batch[m]) for m in self.modalities}
        ce = F.cross_entropy(logits["fusion"].float(), y)
        distill = {
            m: distillation_loss(feats[m].float(), targets[m].float(), self.hp.distill_reduction)
            for m in self.modalities
        }
        loss = umt_loss(ce, distill, self.hp.lam)
        ctx.optimizers.zero_grad()
        loss.backward()
        ctx.optimizers.step()
        out = {"loss": loss.detach(), "loss_ce": ce.detach()}
        out.update({f"loss_distill_{m}": d.detach() for m, d in distill.items()})
        return {**out, **modality_accuracies(logits, y, self.modalities)}

    # ------------------------------------------------------------------ state
    def state_dict(self):
        if self.hp.teacher_mode != "train":
            return {}
        if self.teachers is None:
            return {"teacher_buffers": self._teacher_buffers} if self._teacher_buffers is not None else {}
        buffers = {
            m: {k: b.detach().to("cpu", copy=True) for k, b in t.named_buffers()}
            for m, t in self.teachers.items()
        }
        return {"teacher_buffers": buffers}

    def load_state_dict(self, state):
        self._teacher_buffers = state.get("teacher_buffers")
