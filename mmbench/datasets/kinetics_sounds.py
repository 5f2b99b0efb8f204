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
        from mmbench.datasets.fixtures import write_kinetics_sounds

        return write_kinetics_sounds(Path(root), layout or "ogm", n_per_class, seed)


SPEC = register_dataset(KineticsSoundsSpec())
