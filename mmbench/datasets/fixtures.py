"""Tiny dataset trees in the real on-disk formats, so the real loaders
run end to end in tests: 16-bit mono wavs, small jpg frames, csv/txt/json index files.

``write_fixture(name, root, layout=None, n_per_class=2, seed=0)`` dispatches to the dataset's
``DatasetSpec.write_fixture`` hook; each writer lives with its dataset, this module holds the
media primitives they share. They
write ``n_per_class`` test clips per class and ``n_per_class + TRAIN_EXTRA`` train clips, so the
val carved from train (10 %, ``stratified_carve``) holds at least one clip per class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

FIXTURE_SR = 16000
FRAME_SIZE = (32, 24)  # width, height: small, not square (the loaders resize)
TRAIN_EXTRA = 3
YT_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"


def write_fixture(name: str, root, layout: str | None = None, n_per_class: int = 2, seed: int = 0) -> Path:
    """Write a tiny tree of dataset ``name`` under ``root`` and return the root."""
    from mmbench.datasets.registry import DATASETS

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return DATASETS.get(name).write_fixture(root, layout, n_per_class, seed)


# --------------------------------------------------------------------------- media
def write_wav(path: Path, seconds: float, rng: np.random.Generator, freq: float) -> None:
    """A 16-bit mono wav at 16 kHz: a tone (class-dependent) plus noise."""
    n = max(int(seconds * FIXTURE_SR), 1)
    t = np.arange(n) / FIXTURE_SR
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), x.astype(np.float32), FIXTURE_SR, subtype="PCM_16")


def write_frames(folder: Path, names: list[str], rng: np.random.Generator, hue: int) -> None:
    """Small jpgs (a class-dependent colour plus noise), written in shuffled order so tests see
    that the loader sorts them."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = FRAME_SIZE
    base = np.array([(hue * 53) % 256, (hue * 101) % 256, (hue * 197) % 256], dtype=np.float32)
    for i in rng.permutation(len(names)):
        img = np.clip(base + rng.normal(0, 30, size=(h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / names[i], quality=90)


def _yt_id(rng: np.random.Generator) -> str:
    return "".join(YT_CHARS[i] for i in rng.integers(0, len(YT_CHARS), 11))


def _write_lines(path: Path, lines: list[str], bom: bool = False, crlf: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ("\r\n" if crlf else "\n").join(lines) + ("\r\n" if crlf else "\n")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))


# --------------------------------------------------------------------------- CREMA-D




# --------------------------------------------------------------------------- Kinetics-Sounds




# --------------------------------------------------------------------------- VGGSound


# Names that moved to their dataset's module; kept here for one release.
_MOVED = {
    "CREMAD_SENTENCES": "cremad", "CREMAD_LEVELS": "cremad", "write_cremad": "cremad",
    "KS_CLASSES": "kinetics_sounds", "KS_USED": "kinetics_sounds", "write_kinetics_sounds": "kinetics_sounds",
    "VGG_CLASSES": "vggsound", "VGG_USED": "vggsound", "write_vggsound": "vggsound",
}


def __getattr__(name):
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(f"mmbench.datasets.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
