"""``joint``: naive joint training with a concat linear head.

The "naive MML" / concat baseline of every imbalance paper (GeWu-Lab/OGM-GE_CVPR2022
``main.py --fusion_method concat``). Training is ``Method``'s default step: one cross-entropy
on ``z = W [phi^1; ...; phi^M] + b``; per-modality logits are the split ``W_m phi^m + b/M``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmbench.methods.base import Method
from mmbench.methods.heads import ConcatHead
from mmbench.methods.registry import register_method


@dataclass
class JointHyper:
    head_init: str = "xavier"  # [code] OGM-GE weight_init; "torch" = PyTorch default
    unimodal_bias: str = "split"  # [code] OGM-GE/BalanceBenchmark b/M; "full" for comparisons only


@register_method
class Joint(Method):
    name = "joint"
    Hyper = JointHyper

    def build_heads(self, feature_dims, num_classes):
        return ConcatHead(
            [feature_dims[m] for m in self.modalities],
            num_classes,
            self.modalities,
            unimodal_bias=self.hp.unimodal_bias,
            init=self.hp.head_init,
        )
