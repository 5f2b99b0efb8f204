"""The method's own fused prediction from cached encoder outputs, with some modalities masked.

Readers such as the Shapley contributions (``mmbench/probe/shapley.py``) need the fused logits of
a restored run when a modality's features are replaced, without knowing how the method fuses.
This helper calls the method's ``predict`` on a model whose encoders are stand-ins: each returns
the cached features of its modality (``restore.extract_features``: eval mode, no augmentation) or,
for a masked modality, a fixed fill vector (e.g. the modality's train mean) broadcast over the
batch. The heads are the restored model's own, so nothing here imports a particular method.

A method whose ``predict`` passes altered *inputs* through an encoder (AGM's zeroed coalitions)
gets the stand-in's answer for them (the zeroed features); its fused logits, the full coalition,
are unaffected.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class FeatureStandIn(nn.Module):
    """Stands in for an encoder: returns its input (cached features), or ``fill`` broadcast over
    the batch when set."""

    def __init__(self, fill: torch.Tensor | None = None):
        super().__init__()
        self.fill = fill

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fill is None:
            return x
        return self.fill.to(x.device, x.dtype).unsqueeze(0).expand(x.shape[0], -1)


class _FeatureModel(nn.Module):
    """``encoders`` (stand-ins) and the restored run's ``heads``."""

    def __init__(self, encoders: nn.ModuleDict, heads: nn.Module):
        super().__init__()
        self.encoders = encoders
        self.heads = heads


@torch.no_grad()
def predict_from_features(
    restored, features: dict, labels: torch.Tensor, fill: dict | None = None, batch_size: int = 1024
) -> dict:
    """Logits per head (``{"fusion": [N, K], m: [N, K], ...}``) of ``restored.method.predict`` on
    cached ``features`` (``{m: Tensor[N, D]}``) with their ``labels`` in the batch (as the harness
    passes them; a prediction must not use them); modalities in ``fill`` (``{m: Tensor[D]}``) are
    replaced by that vector for every sample."""
    fill = fill or {}
    stand_ins = nn.ModuleDict({m: FeatureStandIn(fill.get(m)) for m in features})
    model = _FeatureModel(stand_ins, restored.model.heads).eval()
    n = next(iter(features.values())).shape[0]
    outs: dict[str, list] = {}
    device = restored.device
    for start in range(0, n, batch_size):
        batch = {m: f[start : start + batch_size].to(device) for m, f in features.items()}
        batch["label"] = labels[start : start + batch_size].to(device)
        for head, logits in restored.method.predict(model, batch).items():
            outs.setdefault(head, []).append(logits.float().cpu())
    return {head: torch.cat(v) for head, v in outs.items()}
