"""``unimodal``: one modality's encoder with its own linear head.

The unimodal reference rows of the tables ("Unimodal-1/2" in BalanceBenchmark). Only phi^m is
run and optimised; ``predict`` returns ``{"fusion": z^m, m: z^m}``. The run is tagged with the
modality: ``results/<dataset>/unimodal-<modality>/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn as nn

from mmbench.methods.base import Method
from mmbench.methods.heads import xavier_linear
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError


@dataclass
class UnimodalHyper:
    modality: str = ""  # required: which modality to train (one run per modality)
    head_init: str = "xavier"


class _UnimodalHead(nn.Module):
    def __init__(self, modality: str, dim: int, num_classes: int, init: str):
        super().__init__()
        self.modality = modality
        self.fc = xavier_linear(dim, num_classes, init)

    def forward(self, feats):
        z = self.fc(feats[self.modality])
        return {"fusion": z, self.modality: z}


@register_method
class Unimodal(Method):
    name = "unimodal"
    Hyper = UnimodalHyper
    tag_keys = ("modality",)
    modality_logits = "its only head (a separately trained model)"
    fusion_logits = "the same single head (a unimodal reference, not a fusion)"
    # mmbench.testing.check_method trains it on "image", a modality of both mfeat and mfeat3
    conformance_overrides: ClassVar[dict] = {"method.modality": "image"}

    def __init__(self, hyper, modalities, num_classes, feature_dims):
        super().__init__(hyper, modalities, num_classes, feature_dims)
        self.uses_modalities = (hyper.modality,)

    @classmethod
    def validate_params(cls, params, spec):
        m = params.get("modality")
        if m not in spec.modalities:
            raise ConfigError(
                f"unimodal needs --set method.modality=NAME with NAME one of {', '.join(spec.modalities)}"
                + (f" (got {m!r})" if m else "")
            )

    def reference_modality(self) -> str:
        return self.hp.modality

    def build_heads(self, feature_dims, num_classes):
        m = self.hp.modality
        return _UnimodalHead(m, feature_dims[m], num_classes, self.hp.head_init)
