"""Tiny dataset trees in the real on-disk formats, so the real loaders
run end to end in tests: 16-bit mono wavs, small jpg frames, csv/txt/json index files.

``write_fixture(name, root, layout=None, n_per_class=2, seed=0)`` dispatches to the dataset's
``DatasetSpec.write_fixture`` hook; the writers of the audio-visual datasets live here. They
write ``n_per_class`` test clips per class and ``n_per_class + TRAIN_EXTRA`` train clips, so the
val carved from train (10 %, ``stratified_carve``) holds at least one clip per class.
"""

from __future__ import annotations

import csv
import json
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
CREMAD_SENTENCES = ("DFA", "IEO", "IOM", "ITH", "ITS", "IWL", "IWW", "MTI", "TAI", "TIE", "TSI", "WSI")
CREMAD_LEVELS = ("XX", "LO", "MD", "HI")


def write_cremad(root: Path, layout: str = "ogm", n_per_class: int = 2, seed: int = 0) -> Path:
    """CREMA-D in the ``ogm`` (``train.csv`` with a BOM and CRLF, no header; ``test.csv`` with a
    header and name labels) or ``njustkmg`` (``annotations/``: header + code labels, and index
    labels) layout; real-pattern ids for all 6 classes; 0.5-1.5 s wavs; 2-4 frames
    ``00000.jpg, 00030.jpg, ...`` per clip."""
    from mmbench.datasets.cremad import CODES, NAMES

    if layout not in ("ogm", "njustkmg"):
        raise ValueError(f"cremad fixture layouts: ogm, njustkmg (got {layout!r})")
    rng = np.random.default_rng(seed)
    rows = {"train": [], "test": []}
    k = 0
    for split in ("train", "test"):
        for c, code in enumerate(CODES):
            for _ in range(n_per_class + (TRAIN_EXTRA if split == "train" else 0)):
                actor = 1001 + k % 91
                sid = f"{actor}_{CREMAD_SENTENCES[k % 12]}_{code}_{CREMAD_LEVELS[k % 4]}"
                k += 1
                rows[split].append((sid, c))
                write_wav(root / "AudioWAV" / f"{sid}.wav", rng.uniform(0.5, 1.5), rng, 200 + 90 * c)
                n_frames = int(rng.integers(2, 5))
                write_frames(root / "Image-01-FPS" / sid, [f"{30 * i:05d}.jpg" for i in range(n_frames)], rng, c)
    if layout == "ogm":
        _write_lines(root / "train.csv", [f"{s},{CODES[c]}" for s, c in rows["train"]], bom=True, crlf=True)
        _write_lines(root / "test.csv", ["name,label"] + [f"{s},{NAMES[c].title()}" for s, c in rows["test"]])
    else:
        _write_lines(root / "annotations" / "train.csv", ["id,label"] + [f"{s},{CODES[c]}" for s, c in rows["train"]])
        _write_lines(root / "annotations" / "test.csv", [f"{s},{c}" for s, c in rows["test"]], crlf=True)
        (root / "Image-01-FPS-SE").mkdir(exist_ok=True)  # extra folders of the njustkmg tree are ignored
    return root


# --------------------------------------------------------------------------- Kinetics-Sounds
KS_CLASSES = tuple(f"ks action {i:02d}" for i in range(31))
KS_USED = (0, 4, 17)  # a subset of classes, with the full class list


def write_kinetics_sounds(root: Path, layout: str = "ogm", n_per_class: int = 2, seed: int = 0) -> Path:
    """Kinetics-Sounds: ``ogm`` (``my_{train,test}.txt`` lines ``id,10,label_index``,
    ``visual/``, ``audio/``, ``classes.txt``), ``njustkmg`` (header CSVs with name labels,
    ``{train,test}_img/Image-01-FPS/``, ``{train,test}_wav/``, ``classes.txt``) or
    ``njustkmg_noclasses`` (the same without ``classes.txt``). Frame folders hold 4-6 jpgs
    ``frame_1.jpg ...``; train also has one clip with 3 frames and one without a wav (dropped)."""
    if layout not in ("ogm", "njustkmg", "njustkmg_noclasses"):
        raise ValueError(f"kinetics_sounds fixture layouts: ogm, njustkmg, njustkmg_noclasses (got {layout!r})")
    rng = np.random.default_rng(seed)
    njust = layout.startswith("njustkmg")
    rows = {"train": [], "test": []}
    for split in ("train", "test"):
        for c in KS_USED:
            for _ in range(n_per_class + (TRAIN_EXTRA if split == "train" else 0)):
                rows[split].append((f"{_yt_id(rng)}_{int(rng.integers(0, 300)):06d}_000010", c))
    rows["train"].append((f"{_yt_id(rng)}_000003_000013", KS_USED[0]))  # 3 frames: dropped
    rows["train"].append((f"{_yt_id(rng)}_000005_000015", KS_USED[1]))  # no wav: dropped
    few, nowav = rows["train"][-2][0], rows["train"][-1][0]
    for split, items in rows.items():
        side = "test" if split == "test" else "train"
        for sid, c in items:
            if njust:
                wav, frames = root / f"{side}_wav" / f"{sid}.wav", root / f"{side}_img" / "Image-01-FPS" / sid
            else:
                wav, frames = root / "audio" / f"{sid}.wav", root / "visual" / sid
            if sid != nowav:
                write_wav(wav, rng.uniform(0.5, 1.5), rng, 200 + 40 * c)
            n_frames = 3 if sid == few else int(rng.integers(4, 7))
            write_frames(frames, [f"frame_{i + 1}.jpg" for i in range(n_frames)], rng, c)
    if layout != "njustkmg_noclasses":
        _write_lines(root / "classes.txt", list(KS_CLASSES))
    if njust:
        for split, items in rows.items():
            _write_lines(root / "annotations" / f"{split}.csv",
                         ["youtube_id,label"] + [f"{sid},{KS_CLASSES[c]}" for sid, c in items])
    else:
        for split, items in rows.items():
            _write_lines(root / f"my_{split}.txt", [f"{sid},10,{c}" for sid, c in items])
    return root


# --------------------------------------------------------------------------- VGGSound
VGG_CLASSES = tuple(f"vgg sound {i:03d}" for i in range(309))
VGG_USED = (3, 150, 308)


def write_vggsound(root: Path, layout: str = "ogm", n_per_class: int = 2, seed: int = 0) -> Path:
    """VGGSound: ``ogm`` (``vggsound.csv`` without header, ``classes.txt``, frame folders
    ``<id>.mp4/`` and wavs under ``{train,test}-{videos,audios}``; half the clips are stored with
    the 6-digit padded start, half as written) or ``bss`` (``{train,test}.csv`` with a leading
    character before the id, ``label_encoding.json``, ``AudioWAV/``, ``Image-01-FPS/``, no
    ``classes.txt``). Frame folders hold 4-5 jpgs."""
    if layout not in ("ogm", "bss"):
        raise ValueError(f"vggsound fixture layouts: ogm, bss (got {layout!r})")
    rng = np.random.default_rng(seed)
    lines, k = [], 0
    bss_rows = {"train": [], "test": []}
    for split in ("train", "test"):
        for c in VGG_USED:
            for _ in range(n_per_class + (TRAIN_EXTRA if split == "train" else 0)):
                ytid, start = _yt_id(rng), int(rng.integers(0, 300))
                disk_id = f"{ytid}_{start:06d}" if k % 2 == 0 else f"{ytid}_{start}"
                k += 1
                if layout == "ogm":
                    wav = root / f"{split}-audios" / f"{split}-set" / f"{disk_id}.wav"
                    frames = root / f"{split}-videos" / f"{split}-set-img" / "Image-01-FPS" / f"{disk_id}.mp4"
                    lines.append([ytid, str(start), VGG_CLASSES[c], split])
                else:
                    wav, frames = root / "AudioWAV" / f"{disk_id}.wav", root / "Image-01-FPS" / disk_id
                    bss_rows[split].append([str(len(bss_rows[split])), VGG_CLASSES[c], f"/{disk_id}"])
                write_wav(wav, rng.uniform(0.5, 1.5), rng, 200 + c)
                write_frames(frames, [f"{i:05d}.jpg" for i in range(int(rng.integers(4, 6)))], rng, c)
    if layout == "ogm":
        with open(root / "vggsound.csv", "w", newline="") as fh:
            csv.writer(fh).writerows(lines)
        _write_lines(root / "classes.txt", list(VGG_CLASSES))
    else:
        for split, items in bss_rows.items():
            with open(root / f"{split}.csv", "w", newline="") as fh:
                csv.writer(fh).writerows(items)
        used = sorted({VGG_CLASSES[c] for c in VGG_USED})
        (root / "label_encoding.json").write_text(json.dumps({n: i for i, n in enumerate(used)}))
    return root
