"""Staged encoders: an encoder run stage by stage, for methods that fuse between stages.

Greedy learning's MMTM blocks (Wu et al., ICML 2022; nyukat/greedy_multimodal_learning
``src/model.py`` ``MMTM_MVCNN.forward``) sit between ResNet stages, so the method needs more than
the pooled features an encoder's ``forward`` returns. An encoder that declares the
``StagedEncoder`` interface exposes

- ``stage_widths``: the channel count after each stage (ResNet18 of width w: w, 2w, 4w, 8w);
- ``stem(x)``: the input in the layout the stages take (an audio ``(B, F, T)`` gets its channel
  axis; video frames ``(B, 3, T, S, S)`` are folded into the batch, ``(B*T, 3, S, S)``);
- ``stages()``: the stage callables, in order (ResNet18: stem + layer1, layer2, layer3, layer4);
- ``per_sample(h, batch_size)``: a stage output as ``(B, C, positions...)`` (frames unfolded to
  ``(B, C, T, h, w)``) and ``from_per_sample(u)`` its inverse;
- ``pool(h, batch_size)``: the pooled features ``(B, D)``, the input of a linear head.

``pool(stages[-1](...stages[0](stem(x))), B)`` equals ``forward(x)`` bit for bit
(tests/benchmark/test_staged_encoders.py). The ResNet18 encoders of the audio-visual datasets
(``mmbench.backbones.resnet18``) implement it; the mfeat encoders (a three-block CNN and an MLP),
I3D (NVGesture), BERT and ResNet50 (image-text sets) do not.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from mmbench.results.errors import ConfigError


@runtime_checkable
class StagedEncoder(Protocol):
    stage_widths: tuple[int, ...]

    def stem(self, x: torch.Tensor) -> torch.Tensor: ...

    def stages(self) -> tuple: ...

    def per_sample(self, h: torch.Tensor, batch_size: int) -> torch.Tensor: ...

    def from_per_sample(self, u: torch.Tensor) -> torch.Tensor: ...

    def pool(self, h: torch.Tensor, batch_size: int) -> torch.Tensor: ...


def is_staged(encoder) -> bool:
    return isinstance(encoder, StagedEncoder)


def staged_forward(encoder: StagedEncoder, x: torch.Tensor) -> torch.Tensor:
    """``encoder.forward(x)`` through the staged interface (what a mid-fusion method interleaves)."""
    h = encoder.stem(x)
    for stage in encoder.stages():
        h = stage(h)
    return encoder.pool(h, x.shape[0])


def encoder_classes(spec, data_cfg, stop_at_unstaged: bool = True) -> dict[str, type | str]:
    """The class of each encoder the dataset builds under ``data_cfg``, found by building it on
    the ``meta`` device (no memory, no weights) with a forked CPU generator (no random draws of
    the caller change), in modality order; with ``stop_at_unstaged`` it stops after the first
    class that is not staged (so no later encoder, e.g. one fetching pretrained weights, is
    built). An encoder whose constructor fails on the meta device (it reads pretrained weights)
    is named by the ``nn.Module`` whose ``__init__`` failed."""
    out: dict[str, type | str] = {}
    for m, (factory, _dim) in spec.backbones(data_cfg).items():
        try:
            with torch.random.fork_rng(devices=[]), torch.device("meta"):
                out[m] = type(factory())
        except Exception as exc:  # noqa: BLE001 - reported by the caller
            out[m] = (
                _failed_module(exc)
                or f"an encoder that cannot be built on the meta device ({type(exc).__name__})"
            )
        if stop_at_unstaged and (isinstance(out[m], str) or not _declares_stages(out[m])):
            break
    return out


def _failed_module(exc: BaseException) -> type | None:
    """The outermost ``nn.Module`` whose ``__init__`` is on the traceback of ``exc``."""
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        owner = frame.f_locals.get("self")
        if frame.f_code.co_name == "__init__" and isinstance(owner, nn.Module):
            return type(owner)
        tb = tb.tb_next
    return None


def refuse_unstaged(method: str, dataset: str, classes: dict, why: str) -> None:
    """``ConfigError`` naming the first modality whose encoder class is not a ``StagedEncoder``."""
    for m, cls in classes.items():
        if isinstance(cls, str) or not issubclass(cls, nn.Module) or not _declares_stages(cls):
            name = cls if isinstance(cls, str) else cls.__name__
            raise ConfigError(
                f"{method} needs staged convolutional encoders ({why}); {dataset} uses {name} for {m}"
            )


def _declares_stages(cls: type) -> bool:
    return all(
        callable(getattr(cls, a, None)) for a in ("stem", "stages", "per_sample", "from_per_sample", "pool")
    )
