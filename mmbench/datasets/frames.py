"""Frame folders of the audio-visual datasets.

- ``list_frames``: a folder's ``*.jpg`` / ``*.png`` files in natural sort order (digit runs
  compare as integers), so ``frame_2`` < ``frame_10`` and ``00030`` < ``00060``.
- ``segment_indices``: the benchmark's segment sampling (BalanceBenchmark); ``first_indices``: the
  first T sorted files, the reproducible equivalent of the official loaders, which open
  ``os.listdir(dir)[i]`` for i < T.
- ``frame_transform``: the per-frame torchvision transforms of OGM-GE ``dataset/CramedDataset.py``
  and AUG ``dataset/CREMA.py``: train ``RandomResizedCrop(S)``, ``RandomHorizontalFlip()``; test
  ``Resize((S, S))``; both ``ToTensor()`` and ImageNet ``Normalize``. They act on PIL images and
  are the reference the decode path is tested against.
- The decode path (``load_clip``, ``resize_uint8``) does the same on tensors: ``read_frame``
  decodes only the sampled files with libjpeg-turbo (``torchvision.io.decode_jpeg``: the same
  pixels as PIL's decoder, which is libjpeg-turbo too), the crop box and the flip are drawn with
  the same torch RNG calls as those transforms (``RandomResizedCrop.get_params``, then
  ``torch.rand(1) < 0.5``), and the crop is resampled by torchvision's uint8 antialiased bilinear
  kernel, within one grey level of PIL's; ``ToTensor`` + ``Normalize`` are ``normalize_``.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch
from PIL import Image

from mmbench.results.errors import MediaError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key where digit runs compare as integers: ``frame_1_30`` < ``frame_1_120``."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in _DIGITS.split(name) if p != "")


def list_frames(folder: str | Path) -> list[Path]:
    """Frame files of ``folder`` (jpg/png) in natural order; [] when the folder is absent."""
    folder = Path(folder)
    try:
        names = [e.name for e in _scandir(folder) if e.name.lower().endswith(FRAME_SUFFIXES)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [folder / n for n in sorted(names, key=natural_key)]


def _scandir(folder: Path):
    import os

    with os.scandir(folder) as it:
        return [e for e in it if e.is_file()]


def segment_bounds(n: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Segment i of n frames split into t: ``[a_i, b_i)`` with ``a_i = floor(i n / t)`` and
    ``b_i = max(floor((i + 1) n / t), a_i + 1)`` (frames repeat when n < t)."""
    i = torch.arange(t)
    a = (i * n) // t
    b = torch.maximum(((i + 1) * n) // t, a + 1)
    return a, b


def segment_indices(n: int, t: int, train: bool, generator: torch.Generator | None = None) -> list[int]:
    """Train: one uniform draw per segment from torch's RNG; test: each segment's middle
    ``a + (b - a) // 2``."""
    if n <= 0:
        raise ValueError("no frames to sample")
    a, b = segment_bounds(n, t)
    if train:
        u = torch.rand(t, generator=generator)
        idx = a + (u * (b - a)).long().clamp(max=(b - a - 1))
    else:
        idx = a + (b - a) // 2
    return idx.tolist()


def first_indices(n: int, t: int) -> list[int]:
    """The first t sorted frames, ``min(i, n - 1)`` (the official "first T files" behaviour)."""
    if n <= 0:
        raise ValueError("no frames to sample")
    return [min(i, n - 1) for i in range(t)]


def sample_indices(n: int, t: int, mode: str, train: bool) -> list[int]:
    if mode == "segment":
        return segment_indices(n, t, train)
    if mode == "first":
        return first_indices(n, t)
    raise ValueError(f"unknown frame_sampling {mode!r}; choose segment or first")


def frame_transform(size: int, train: bool):
    """The per-frame PIL transform of the official loaders (see module docstring)."""
    from torchvision import transforms  # here, not at import: 1.5 s off every process that never decodes

    if train:
        geo = [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip()]
    else:
        geo = [transforms.Resize((size, size))]
    return transforms.Compose(geo + [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def open_rgb(path: str | Path) -> Image.Image:
    """The image as RGB; one PIL cannot decode raises ``MediaError`` naming it."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # UnidentifiedImageError is an OSError
        raise MediaError.of(path, exc) from None


# torchvision 0.29 (pinned) warns on every decode that TorchCodec will take these decoders over;
# filtered once here, not on every frame
warnings.filterwarnings(
    "ignore", message="The image decoding and encoding capabilities of TorchVision are deprecated",
    category=DeprecationWarning,
)


def read_frame(path: str | Path) -> torch.Tensor:
    """The image as RGB uint8 ``(3, H, W)``: jpgs by ``decode_jpeg`` (libjpeg-turbo), other
    formats by ``decode_image``; a file that cannot be decoded raises ``MediaError`` naming it."""
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file

    try:
        data = read_file(str(path))
        if str(path).lower().endswith((".jpg", ".jpeg")):
            return decode_jpeg(data, mode=ImageReadMode.RGB)
        return decode_image(data, mode=ImageReadMode.RGB)
    except (RuntimeError, OSError, ValueError) as exc:
        raise MediaError.of(path, exc) from None


def resize_uint8(img: torch.Tensor, size: int, train: bool) -> torch.Tensor:
    """The geometric part of ``frame_transform`` on a uint8 ``(3, H, W)`` frame: train
    ``RandomResizedCrop(S)`` (box from ``get_params``, the same torch RNG draws) then the flip
    (``torch.rand(1) < 0.5``, as ``RandomHorizontalFlip``); test ``Resize((S, S))``."""
    from torchvision.transforms import RandomResizedCrop
    from torchvision.transforms.v2 import functional as F2

    if not train:
        return F2.resize(img, [size, size], antialias=True)
    i, j, h, w = RandomResizedCrop.get_params(img, [0.08, 1.0], [3.0 / 4.0, 4.0 / 3.0])
    out = F2.resized_crop(img, i, j, h, w, [size, size], antialias=True)
    return out.flip(-1) if torch.rand(1) < 0.5 else out


def load_clip(files: list[Path], t: int, size: int, mode: str, train: bool, out: torch.Tensor | None = None) -> torch.Tensor:
    """Sample t of the sorted ``files``, decode and transform each independently into ``out``
    (``(3, t, S, S)`` float32, allocated when None), normalised at once (elementwise: the same bits
    as frame by frame)."""
    idx = sample_indices(len(files), t, mode, train)
    if out is None:
        out = torch.empty(3, t, size, size)
    for k, i in enumerate(idx):
        out[:, k].copy_(resize_uint8(read_frame(files[i]), size, train))
    return normalize_(out)


def resized_uint8(path: str | Path, size: int) -> torch.Tensor:
    """A frame resized to ``(S, S)`` as the decode path's test transform does, kept as uint8
    ``(3, S, S)``: the decoded cache stores this (so cached test frames equal decoded ones)."""
    return resize_uint8(read_frame(path), size, train=False)


_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


class Uint8FrameTransform:
    """The frame transform applied to a cached uint8 ``(3, S, S)`` frame. Test: exactly the decode
    path (the cache holds its ``Resize((S, S))`` output, and the scaling and normalisation are the
    same ``normalize_``). Train: ``RandomResizedCrop(S)`` and the flip act on
    the already resized frame (the crop box is drawn on the S x S image, not on the original one).
    A class, not a closure, so datasets holding it pickle into DataLoader workers."""

    def __init__(self, size: int, train: bool):
        self.size, self.train = size, train

    def geometric(self, x: torch.Tensor) -> torch.Tensor:
        """The random crop and flip (train: ``resize_uint8``, the decode path's) of a uint8 frame;
        the identity at test."""
        return resize_uint8(x, self.size, train=True) if self.train else x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_(self.geometric(x).float())


def normalize_(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """In place: ``x / 255``, minus the ImageNet mean, over its std, along channel ``dim`` of a float
    tensor holding uint8 values (``ToTensor`` + ``Normalize``). Elementwise, so a whole batch gives
    the same bits as each frame alone."""
    shape = [1] * x.dim()
    shape[dim] = 3
    return x.div_(255).sub_(_MEAN.view(shape)).div_(_STD.view(shape))


def uint8_transform(size: int, train: bool) -> Uint8FrameTransform:
    return Uint8FrameTransform(size, train)


def image_problem(path: str | Path) -> str | None:
    """Why an image cannot be decoded (PIL ``verify()``, then a full load), or None."""
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im.load()
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a finding
        return f"{path}: unreadable image ({type(exc).__name__}: {str(exc).strip() or 'decode failed'})"
    return None
