"""``vggsound``: VGGSound, 309 classes of 10-s YouTube clips.

Layouts: ``ogm`` (GeWu-Lab/OGM-GE_CVPR2022: ``vggsound.csv`` rows
``youtube_id,start_seconds,label_name,split`` without header; frames in
``{train,test}-videos/{train,test}-set-img/Image-01-FPS/<ytid>_<start>.mp4/``, wavs in
``{train,test}-audios/{train,test}-set/<ytid>_<start>.wav``; the start as written, else 6-digit
padded) and ``bss`` (njustkmg/IJCAI25-BSS ``VGGSound/dataset/VGGSoundDataset.py``:
``{train,test}.csv`` with the label name in column 1 and the id, with one leading character BSS
strips, in column 2; ``AudioWAV/<id>.wav``, ``Image-01-FPS/<id>/``). Class indices follow sorted
names (``classes.txt``, else derived; §1.3). Val is carved. Clips with missing media or fewer than 4
frames are dropped by default.

Presets: ``paper`` *(inferred: AUG released no VGGSound code; BSS's loader, whose CREMA-D and KS
loaders AUG shares)*: 35,400 Hz, doubled until >= 20 s, first 20 s, STFT 512/353 -> (1,257,2006);
1 frame at 384. ``ogm`` = OGM-GE ``dataset/VGGSoundDataset.py``: 16 kHz, doubled until >= 10 s,
a start uniform in [0, 80,000] in train and test (test seeded per sample;
``data.audio.test_crop=center`` starts at 40,000), 5 s, STFT 256/128 -> (1,129,626); 3 frames at 224.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from mmbench.datasets.audiovisual import AVSpec, av_presets, read_lines, split_fields
from mmbench.datasets.base import Problem
from mmbench.datasets.registry import register_dataset


class VGGSoundSpec(AVSpec):
    name = "vggsound"
    num_classes = 309
    class_names = ()
    fixed_classes = False
    min_frames = 4
    drop_missing_default = True

    def presets(self):
        paper_audio = {"features": "stft", "sample_rate": 35400, "repeat": "double", "min_seconds": 20.0,
                       "seconds": 20.0, "start": "first", "n_fft": 512, "hop": 353}
        ogm_audio = {"features": "stft", "sample_rate": 16000, "repeat": "double", "min_seconds": 10.0,
                     "seconds": 5.0, "start": "random", "max_start": 80000, "test_crop": "random",
                     "n_fft": 256, "hop": 128}
        out = av_presets(paper_audio, frames=1, image_size=384,
                         extra={"ogm": {"audio": ogm_audio, "frames": 3, "image_size": 224}})
        return out

    def layouts(self):
        return ("ogm", "bss")

    def markers(self):
        return {"ogm": ("vggsound.csv",), "bss": ("train.csv", "test.csv")}

    def index_files(self, root: Path, layout: str):
        if layout == "ogm":
            return {"train": root / "vggsound.csv", "test": root / "vggsound.csv"}
        return {"train": root / "train.csv", "test": root / "test.csv"}

    def parse_index(self, path, split, layout):
        entries, problems = [], []
        root = path.parent
        for lineno, line in read_lines(path):
            fields = split_fields(line) if "," in line else []
            where = f"{path}:{lineno}"
            if layout == "ogm":
                if len(fields) < 4 or fields[3] not in ("train", "test"):
                    problems.append(Problem("error", f"{where}: cannot parse {line[:60]!r}; expected "
                                            "'youtube_id,start_seconds,label_name,train|test'"))
                    continue
                ytid, start, label, part = fields[0], fields[1], fields[2], fields[3]
                sid = self._ogm_id(root, part, ytid, start)
                entries.append((part, sid, label, where))
            else:
                if len(fields) < 3:
                    problems.append(Problem("error", f"{where}: cannot parse {line[:60]!r}; expected "
                                            "'<n>,<label_name>,<x><id>' (BSS csv)"))
                    continue
                entries.append((split, self._bss_id(root, fields[2]), fields[1], where))
        return entries, problems

    @staticmethod
    def _ogm_dirs(root: Path, part: str) -> tuple[Path, Path]:
        return (root / f"{part}-audios" / f"{part}-set",
                root / f"{part}-videos" / f"{part}-set-img" / "Image-01-FPS")

    def _ogm_id(self, root: Path, part: str, ytid: str, start: str) -> str:
        """``<ytid>_<start>`` as written, else the 6-digit padded start, whichever is on disk."""
        cands = [f"{ytid}_{start}"]
        if start.isdigit():
            cands.append(f"{ytid}_{int(start):06d}")
        adir, vdir = self._ogm_dirs(root, part)
        for c in cands:
            if (adir / f"{c}.wav").exists() or (vdir / f"{c}.mp4").exists():
                return c
        return cands[0]

    @staticmethod
    def _bss_id(root: Path, raw: str) -> str:
        """BSS strips one leading character (``item[2][1:]``); the id is tried with and without it."""
        raw = raw.strip()
        for c in (raw[1:], raw):
            if c and ((root / "AudioWAV" / f"{c}.wav").exists() or (root / "Image-01-FPS" / c).exists()):
                return c
        return raw[1:] if len(raw) > 1 else raw

    def media(self, root, layout, split, sid, opts):
        if layout == "ogm":
            adir, vdir = self._ogm_dirs(root, "test" if split == "test" else "train")
            return adir / f"{sid}.wav", vdir / f"{sid}.mp4"
        return root / "AudioWAV" / f"{sid}.wav", root / "Image-01-FPS" / sid

    def published_checks(self, index):
        out = self.count_problems(index, {"train": 168618, "test": 13954}, {}, {},
                                  "the AUG paper's VGGSound download")
        enc = Path(index.files["train"]).parent / "label_encoding.json"
        if index.layout == "bss" and enc.is_file():
            try:
                names = set(json.loads(enc.read_text()))
            except (ValueError, OSError) as exc:
                return out + [Problem("error", f"{enc}: unreadable json ({exc})")]
            used = {r.label_name for r in index.rows}
            if not used <= names or (set(index.classes) != names):
                out.append(Problem("warn", f"{enc} disagrees with the class list ({index.class_note}): "
                                   f"{len(used - names)} index labels not in it, {len(names)} names vs "
                                   f"{len(index.classes)} classes"))
        return out

    def write_fixture(self, root, layout=None, n_per_class=2, seed=0):
        return write_vggsound(Path(root), layout or "ogm", n_per_class, seed)

    def write_raw_fixture(self, root, n_per_class=2, seed=0):
        raw_vggsound(Path(root), n_per_class, seed)

    def prepare(self, raw, out, jobs, progress, **options):
        from mmbench.datasets.prepare.audiovisual import prepare_vggsound

        return prepare_vggsound(raw, out, jobs, progress, **options)


# --------------------------------------------------------------------------- fixtures

VGG_CLASSES = tuple(f"vgg sound {i:03d}" for i in range(309))


VGG_USED = (3, 150, 308)


def write_vggsound(root: Path, layout: str = "ogm", n_per_class: int = 2, seed: int = 0) -> Path:
    """VGGSound: ``ogm`` (``vggsound.csv`` without header, ``classes.txt``, frame folders
    ``<id>.mp4/`` and wavs under ``{train,test}-{videos,audios}``; half the clips are stored with
    the 6-digit padded start, half as written) or ``bss`` (``{train,test}.csv`` with a leading
    character before the id, ``label_encoding.json``, ``AudioWAV/``, ``Image-01-FPS/``, no
    ``classes.txt``). Frame folders hold 4-5 jpgs."""
    from mmbench.datasets.fixtures import TRAIN_EXTRA, _write_lines, _yt_id, write_frames, write_wav

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


VGG_RAW_CLASSES = ("dog barking", "playing violin, fiddle", "rain")


def raw_vggsound(root: Path, n_per_class: int, seed: int) -> None:
    """VGGSound clips ``video/<ytid>_<start:06d>.mp4`` and ``vggsound.csv`` without a header
    (a label with a comma is quoted, as in the official file)."""
    import csv

    from mmbench.datasets.fixtures import _yt_id
    from mmbench.datasets.raw_fixtures import clip_frames, raw_per_class, tone, write_video

    rng = np.random.default_rng(seed)
    rows = []
    for split in ("train", "test"):
        for c, label in enumerate(VGG_RAW_CLASSES):
            for _ in range(raw_per_class(split, n_per_class)):
                ytid, start = _yt_id(rng), int(rng.integers(0, 300))
                rows.append([ytid, str(start), label, split])
                write_video(root / "video" / f"{ytid}_{start:06d}.mp4", clip_frames(10, c, rng), 2, "mpeg4",
                            tone(5.0, 250 + 200 * c, rng, 22050, 1))
    with open(root / "vggsound.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)


SPEC = register_dataset(VGGSoundSpec())
