"""``cremad``: CREMA-D, 7,442 acted clips of 91 actors, 6 emotions.

Layouts (both with ``AudioWAV/<id>.wav`` and ``Image-01-FPS/<id>/*.jpg``):
``ogm`` (GeWu-Lab/OGM-GE_CVPR2022: ``<root>/{train,test}.csv``) and ``njustkmg``
(AMSS/BSS/AUG: ``<root>/annotations/{train,test}.csv``). Index rows are ``id,label``; a header,
a UTF-8 BOM, CRLF and MLA's ``<id>.flv Label`` lines are accepted; labels may be a code
(``NEU``), a name (any case) or an index 0-5. The OGM-GE split (6,698 / 744) has no val: val is
carved (§1.3). Class order is OGM-GE's (``dataset/CramedDataset.py``), never sorted.

Presets: ``paper`` = AUG ``dataset/CREMA.py`` (22,050 Hz, tile x20, 20 s, STFT 512/353 ->
(1,257,1250); 1 frame at 224), ``ogm`` = OGM-GE (tile x3, 3 s -> (1,257,188)), ``fbank`` (§1.6),
``smoke`` (tiny, for tests).
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

CODES = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")
NAMES = ("neutral", "happy", "sad", "fear", "disgust", "anger")
ALIASES = {"angry": 5, "fearful": 3, "disgusted": 4, "happiness": 1, "sadness": 2}
TRAIN_PER_CLASS = [973, 1148, 1131, 1138, 1142, 1166]
TEST_PER_CLASS = [114, 123, 140, 133, 129, 105]
MEDIA_SUFFIXES = (".flv", ".wav", ".mp4", ".avi")


class CremadSpec(AVSpec):
    name = "cremad"
    num_classes = 6
    class_names = NAMES
    min_frames = 1
    drop_missing_default = False

    def presets(self):
        paper_audio = {"features": "stft", "sample_rate": 22050, "repeat": "tile", "tile": 20, "seconds": 20.0,
                       "start": "first", "n_fft": 512, "hop": 353}
        ogm_audio = dict(paper_audio, tile=3, seconds=3.0)
        out = av_presets(paper_audio, frames=1, image_size=224, extra={"ogm": {"audio": ogm_audio}})
        for p in out.values():
            p["paths"] = {"audio": "", "frames": ""}  # OGM-GE passes both media folders as arguments
        return out

    def layouts(self):
        return ("ogm", "njustkmg")

    def markers(self):
        return {"ogm": ("train.csv", "test.csv"), "njustkmg": ("annotations/train.csv", "annotations/test.csv")}

    def index_files(self, root: Path, layout: str):
        base = root if layout == "ogm" else root / "annotations"
        return {"train": base / "train.csv", "test": base / "test.csv"}

    def resolve_label(self, token, classes):
        t = token.strip()
        if t.isdigit():
            k = int(t)
            return k if k < 6 else -1
        up, low = t.upper(), t.lower()
        if up in CODES:
            return CODES.index(up)
        if low in NAMES:
            return NAMES.index(low)
        return ALIASES.get(low, -1)

    def parse_index(self, path, split, layout):
        entries, problems = [], []
        for lineno, line in read_lines(path):
            fields = split_fields(line)
            if len(fields) < 2:
                problems.append(Problem("error", f"{path}:{lineno}: cannot parse {line[:60]!r}; expected 'id,label'"))
                continue
            sid, token = fields[0], fields[-1]
            if lineno == 1 and self.resolve_label(token, ()) < 0 and looks_like_header(fields):
                continue
            sid = strip_media_suffixes(sid, MEDIA_SUFFIXES)
            entries.append((split, sid, token, f"{path}:{lineno}"))
        return entries, problems

    def media(self, root, layout, split, sid, opts):
        paths = opts.get("paths", {})
        frames = self.path_option(root, paths.get("frames", ""), "Image-01-FPS") / sid
        if opts.get("audio_source", "wav") == "precomputed":
            return precomputed_file(self.path_option(root, paths.get("audio", ""), "wav_pkl"), sid), frames
        return self.path_option(root, paths.get("audio", ""), "AudioWAV") / f"{sid}.wav", frames

    def published_checks(self, index):
        return self.count_problems(
            index,
            {"train": 6698, "test": 744},
            {"train": TRAIN_PER_CLASS, "test": TEST_PER_CLASS},
            {"train": "0f03b406eb943e5d", "test": "2a5837cebb2d8380"},
            "the OGM-GE CREMA-D list",
        )

    def write_fixture(self, root, layout=None, n_per_class=2, seed=0):
        from mmbench.datasets.fixtures import write_cremad

        return write_cremad(Path(root), layout or "ogm", n_per_class, seed)


SPEC = register_dataset(CremadSpec())
__all__ = ["CODES", "NAMES", "SPEC", "CremadSpec"]
