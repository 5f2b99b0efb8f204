"""Frame augmentation of a whole batch on the training device (``data.cache.augment = "device"``).

With it, the decoded cache's ``get_batch`` hands over frames and spectrograms as stored (uint8
``(B, T, 3, S, S)``, float16 ``(B, 1, F, T)``); the loader moves them to the device and calls
``BatchAugment``, which does for every frame of the batch at once what the per-frame transform
of the cached path (``frames.Uint8FrameTransform``) does one frame at a time:

- train: torchvision ``RandomResizedCrop(S)`` (scale (0.08, 1), ratio (3/4, 4/3)) and
  ``RandomHorizontalFlip()``; test: the frame as stored (the cache holds ``Resize((S, S))``);
- ``ToTensor`` + ImageNet ``Normalize`` (``frames.normalize_``: at test the same bits as today).

Boxes (``crop_boxes``) follow ``RandomResizedCrop.get_params``: up to 10 tries of a uniform area
fraction and a log-uniform aspect ratio, sides ``round(sqrt(area * ratio))`` /
``round(sqrt(area / ratio))`` (round half to even, as Python's ``round``), the first try that fits
is placed uniformly, else the central fallback crop with the ratio clamped. The crop is resampled
by ``resized_crops``: bilinear with ``align_corners=False`` and source coordinates clamped to the
crop, i.e. ``F.interpolate(crop, (S, S), mode="bilinear")`` of each crop, done for the batch as
two batched matmuls with per-sample interpolation matrices; the flip reverses the output columns.
It does not antialias: exact for crops no larger than the output (always the case in the cache,
whose frames are stored at S x S), and it does not round to uint8 as the per-frame uint8 path
does (differences below one grey level; tested).

Every random draw comes from the ``generator`` the loader passes (``seeding.augment_generator``:
a pure function of run seed and epoch), drawn on the CPU, so a batch's boxes and flips are the
same on every device and a resumed run repeats them.
"""

from __future__ import annotations

import torch

from mmbench.datasets import frames as frame_ops

SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
TRIES = 10


def crop_boxes(
    n: int,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    scale: tuple[float, float] = SCALE,
    ratio: tuple[float, float] = RATIO,
    tries: int = TRIES,
) -> torch.Tensor:
    """``n`` boxes ``(top, left, h, w)`` (int64 ``(n, 4)``) drawn as torchvision's
    ``RandomResizedCrop.get_params(img, scale, ratio)`` draws one (see the module docstring)."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    target = area * torch.empty(n, tries).uniform_(scale[0], scale[1], generator=generator).double()
    aspect = torch.exp(torch.empty(n, tries).uniform_(float(log_ratio[0]), float(log_ratio[1]), generator=generator))
    aspect = aspect.double()
    w = torch.round(torch.sqrt(target * aspect)).long()
    h = torch.round(torch.sqrt(target / aspect)).long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(fits.int(), dim=1)  # the first try that fits (0 when none does)
    found = fits.any(dim=1)
    rows = torch.arange(n)
    h, w = h[rows, first], w[rows, first]
    fh, fw = fallback_box(height, width, ratio)
    h = torch.where(found, h, fh)
    w = torch.where(found, w, fw)
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    top = torch.where(found, (u[:, 0] * (height - h + 1)).long().clamp(max=height - h), (height - h) // 2)
    left = torch.where(found, (u[:, 1] * (width - w + 1)).long().clamp(max=width - w), (width - w) // 2)
    return torch.stack([top, left, h, w], dim=1)


def fallback_box(height: int, width: int, ratio: tuple[float, float] = RATIO) -> tuple[int, int]:
    """``(h, w)`` of torchvision's central fallback: the whole image, its ratio clamped to ``ratio``."""
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        return int(round(width / min(ratio))), width
    if in_ratio > max(ratio):
        return height, int(round(height * max(ratio)))
    return height, width


def _axis(start: torch.Tensor, length: torch.Tensor, size: int, reverse: torch.Tensor | None = None):
    """Source indices ``lo``, ``hi`` (``(n, size)``, into the full image) and weights of ``hi``
    along one axis: ``upsample_bilinear2d``'s ``src = (dst + 0.5) * in / out - 0.5``, clamped at 0,
    ``hi = lo + 1`` inside the crop; ``reverse`` rows read the crop right to left (the flip)."""
    dst = torch.arange(size, device=start.device, dtype=torch.float32)
    scale = length.to(torch.float32)[:, None] / size
    src = ((dst[None, :] + 0.5) * scale - 0.5).clamp(min=0)
    lo = src.long()
    lo = torch.minimum(lo, length[:, None] - 1)
    hi = torch.minimum(lo + 1, length[:, None] - 1)
    frac = src - lo.to(torch.float32)
    if reverse is not None:
        lo, hi, frac = (torch.where(reverse[:, None], t.flip(1), t) for t in (lo, hi, frac))
    return lo + start[:, None], hi + start[:, None], frac


def _interpolation_matrix(start, length, size: int, full: int, reverse=None) -> torch.Tensor:
    """``(n, size, full)``: row ``p`` of sample ``k`` holds the two bilinear weights of output
    pixel ``p`` on the source pixels ``lo``, ``hi`` of ``_axis`` (one weight 1 where they meet)."""
    lo, hi, frac = _axis(start, length, size, reverse)
    m = torch.zeros(lo.shape[0], size, full, device=lo.device, dtype=torch.float32)
    m.scatter_add_(2, lo[..., None], (1.0 - frac)[..., None])
    return m.scatter_add_(2, hi[..., None], frac[..., None])


def resized_crops(images: torch.Tensor, boxes: torch.Tensor, size: int, flip: torch.Tensor | None = None) -> torch.Tensor:
    """Each ``images[k]`` (``(N, C, H, W)``, any dtype) cropped to ``boxes[k] = (top, left, h, w)``
    and resized to ``(size, size)`` bilinearly (float32), mirrored where ``flip[k]``: per sample
    ``R_y @ image @ R_x^T`` with the interpolation matrices, as two batched matmuls (one call
    each for the whole batch, channels folded into the batch rows)."""
    n, c, height, width = images.shape
    boxes = boxes.to(images.device)
    ry = _interpolation_matrix(boxes[:, 0], boxes[:, 2], size, height)
    rx = _interpolation_matrix(boxes[:, 1], boxes[:, 3], size, width, None if flip is None else flip.to(images.device))
    x = images.permute(0, 2, 1, 3).to(torch.float32).reshape(n, height, c * width)  # (N, H, C*W)
    x = torch.bmm(ry, x).reshape(n, size * c, width)  # rows: (N, S, C*W) -> (N, S*C, W)
    x = torch.bmm(x, rx.transpose(1, 2))  # columns: (N, S*C, S)
    return x.reshape(n, size, c, size).permute(0, 2, 1, 3).contiguous()


class BatchAugment:
    """The device-side frame transform of one split (``train``: crop + flip; else none), then
    ``ToTensor`` + ``Normalize``. Input batch: ``video`` uint8 ``(B, T, 3, S, S)``, ``audio`` any
    float dtype; output: ``video`` float32 ``(B, 3, T, S, S)``, ``audio`` float32 (the layout
    every encoder takes)."""

    def __init__(self, size: int, train: bool):
        self.size = int(size)
        self.train = train

    def __call__(self, batch: dict, generator: torch.Generator | None) -> dict:
        video = batch["video"]
        b, t, c, height, width = video.shape
        frames = video.reshape(b * t, c, height, width)
        if self.train:
            boxes = crop_boxes(b * t, height, width, generator)
            flip = torch.rand(b * t, generator=generator) < 0.5
            frames = resized_crops(frames, boxes, self.size, flip)
        else:
            frames = frames.to(torch.float32)
        out = frame_ops.normalize_(frames, dim=1).reshape(b, t, c, self.size, self.size)
        return {**batch, "audio": batch["audio"].float(), "video": out.permute(0, 2, 1, 3, 4).contiguous()}

