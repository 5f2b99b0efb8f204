"""``kinetics_sounds``: Kinetics-Sounds, 31 audible-and-visible Kinetics-400 classes, 10-s YouTube
clips with frames at 1 fps.

Layouts: ``ogm`` (GeWu-Lab/OGM-GE_CVPR2022: ``my_{train,test}.txt`` [``my_val.txt``],
``visual/<id>/*.jpg``, ``audio/<id>.wav``) and ``njustkmg`` (AUG/BSS:
``annotations/{train,test}.csv`` [``val.csv``], ``{train,test}_img/Image-01-FPS/<id>/``,
``{train,test}_wav/<id>.wav``; val media live in ``train_*``). Index lines: OGM-GE
``id,<seconds>,<label_index>``, njustkmg ``youtube_id,label`` with a header, or BalanceBenchmark
whitespace-separated ``id ... label``. Class names come from ``<root>/classes.txt``, else are
derived from the index files (sorted names, §1.3); integer labels are indices.

Clips whose wav or frame folder is missing, or with fewer than 4 frames (the official
``len(os.listdir(dir)) > 3``), are dropped by default (``data.drop_missing``).

Presets: ``paper`` = AUG ``dataset/KS.py`` (= BSS ``KS/dataset/KS.py``): 35,400 Hz, doubled until
>= 10 s, first 10 s, STFT 512/353 -> (1,257,1003); 3 frames at 224. ``fbank`` = OGM-GE
``data/KineticSound/process_audio.py``. No ``ogm`` preset (OGM-GE's KS spectrogram recipe is
unpublished; ``data.audio_source=precomputed`` loads such arrays as they are).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmbench.datasets.audiovisual import (
    AVSpec,
    av_presets,
    looks_like_header,
    precomputed_file,
    read_lines,
    split_fields,
    strip_media_suffixes,
)
from mmbench.datasets.base import Problem
from mmbench.datasets.registry import register_dataset

MEDIA_SUFFIXES = (".mp4", ".wav", ".avi", ".mkv", ".webm")


class KineticsSoundsSpec(AVSpec):
    name = "kinetics_sounds"
    num_classes = 31
    class_names = ()
    fixed_classes = False
    min_frames = 4
    drop_missing_default = True

    def presets(self):
        paper_audio = {"features": "stft", "sample_rate": 35400, "repeat": "double", "min_seconds": 10.0,
                       "seconds": 10.0, "start": "first", "n_fft": 512, "hop": 353}
        return av_presets(paper_audio, frames=3, image_size=224, smoke_frames=2)

    def layouts(self):
        return ("ogm", "njustkmg")

    def markers(self):
        return {"ogm": ("my_train.txt", "my_test.txt"), "njustkmg": ("annotations/train.csv", "annotations/test.csv")}

    def index_files(self, root: Path, layout: str):
        if layout == "ogm":
            files = {"train": root / "my_train.txt", "test": root / "my_test.txt"}
            val = root / "my_val.txt"
        else:
            files = {"train": root / "annotations/train.csv", "test": root / "annotations/test.csv"}
            val = root / "annotations/val.csv"
        if val.is_file():
            files["val"] = val
        return files

    def parse_index(self, path, split, layout):
        entries, problems = [], []
        for lineno, line in read_lines(path):
            fields = split_fields(line)
            if lineno == 1 and looks_like_header(fields):
                continue
            if len(fields) < 2:
                problems.append(Problem("error", f"{path}:{lineno}: cannot parse {line[:60]!r}; expected "
                                        "'id,<seconds>,<label_index>', 'youtube_id,label' or 'id ... label'"))
                continue
            sid = strip_media_suffixes(fields[0], MEDIA_SUFFIXES)
            entries.append((split, sid, fields[-1], f"{path}:{lineno}"))
        return entries, problems

    def media(self, root, layout, split, sid, opts):
        pre = opts.get("audio_source", "wav") == "precomputed"
        if layout == "ogm":
            audio = precomputed_file(root / "audio_spec", sid) if pre else root / "audio" / f"{sid}.wav"
            return audio, root / "visual" / sid
        side = "test" if split == "test" else "train"
        audio = precomputed_file(root / f"{side}_wav_pkl", sid) if pre else root / f"{side}_wav" / f"{sid}.wav"
        return audio, root / f"{side}_img" / "Image-01-FPS" / sid

    def published_checks(self, index):
        out = []
        if index.layout == "ogm":
            out += self.count_problems(index, {"train": 14799, "test": 2597}, {},
                                       {"train": "f7da320e81d7c6c6", "test": "4b78ea36de0819ec"},
                                       "the OGM-GE Kinetics-Sounds list")
        weight = Path(index.files["train"]).parent / "weight.csv"
        if weight.is_file():
            ids = set()
            for lineno, line in read_lines(weight):
                fields = split_fields(line)
                if not (lineno == 1 and looks_like_header(fields)):
                    ids.add(fields[0])
            train = {r.id for r in index.rows if r.split == "train"}
            out.append(Problem("warn", f"{weight}: {len(ids)} ids, {len(ids & train)} of them in train; "
                               "AUG loads this file but never uses it, and mmbench ignores it"))
        return out

    def write_fixture(self, root, layout=None, n_per_class=2, seed=0):
        return write_kinetics_sounds(Path(root), layout or "ogm", n_per_class, seed)

    def write_raw_fixture(self, root, n_per_class=2, seed=0):
        raw_kinetics_sounds(Path(root), n_per_class, seed)

    def prepare(self, raw, out, jobs, progress, **options):
        from mmbench.datasets.prepare.audiovisual import prepare_kinetics_sounds

        return prepare_kinetics_sounds(raw, out, jobs, progress, **options)


# --------------------------------------------------------------------------- fixtures

KS_CLASSES = tuple(f"ks action {i:02d}" for i in range(31))


KS_USED = (0, 4, 17)  # a subset of classes, with the full class list


def write_kinetics_sounds(root: Path, layout: str = "ogm", n_per_class: int = 2, seed: int = 0) -> Path:
    """Kinetics-Sounds: ``ogm`` (``my_{train,test}.txt`` lines ``id,10,label_index``,
    ``visual/``, ``audio/``, ``classes.txt``), ``njustkmg`` (header CSVs with name labels,
    ``{train,test}_img/Image-01-FPS/``, ``{train,test}_wav/``, ``classes.txt``) or
    ``njustkmg_noclasses`` (the same without ``classes.txt``). Frame folders hold 4-6 jpgs
    ``frame_1.jpg ...``; train also has one clip with 3 frames and one without a wav (dropped)."""
    from mmbench.datasets.fixtures import TRAIN_EXTRA, _write_lines, _yt_id, write_frames, write_wav

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


KS_RAW_CLASSES = ("playing drums", "playing piano", "dog barking")


def raw_kinetics_sounds(root: Path, n_per_class: int, seed: int) -> None:
    """Kinetics-Sounds clips (5 s, 2 fps MPEG-4 + AAC stereo 22.05 kHz) under
    ``<split>/<label>/``, and the Kinetics-style csv with a header."""
    from mmbench.datasets.fixtures import _yt_id
    from mmbench.datasets.raw_fixtures import clip_frames, raw_per_class, tone, write_video

    rng = np.random.default_rng(seed)
    lines = ["label,youtube_id,time_start,time_end,split"]
    for split in ("train", "test"):
        for c, label in enumerate(KS_RAW_CLASSES):
            for _ in range(raw_per_class(split, n_per_class)):
                ytid, start = _yt_id(rng), int(rng.integers(0, 300))
                lines.append(f"{label},{ytid},{start},{start + 10},{split}")
                path = root / split / label / f"{ytid}_{start:06d}_{start + 10:06d}.mp4"
                write_video(path, clip_frames(10, c, rng), 2, "mpeg4", tone(5.0, 300 + 150 * c, rng, 22050, 2))
    (root / "kinetics_sounds.csv").write_text("\n".join(lines) + "\n")


SPEC = register_dataset(KineticsSoundsSpec())
