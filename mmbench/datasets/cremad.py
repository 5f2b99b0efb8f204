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
        return write_cremad(Path(root), layout or "ogm", n_per_class, seed)

    def write_raw_fixture(self, root, n_per_class=2, seed=0):
        raw_cremad(Path(root), n_per_class, seed)

    def prepare(self, raw, out, jobs, progress, **options):
        from mmbench.datasets.prepare.audiovisual import prepare_cremad

        return prepare_cremad(raw, out, jobs, progress, **options)


# --------------------------------------------------------------------------- fixtures

CREMAD_SENTENCES = ("DFA", "IEO", "IOM", "ITH", "ITS", "IWL", "IWW", "MTI", "TAI", "TIE", "TSI", "WSI")


CREMAD_LEVELS = ("XX", "LO", "MD", "HI")


def write_cremad(root: Path, layout: str = "ogm", n_per_class: int = 2, seed: int = 0) -> Path:
    """CREMA-D in the ``ogm`` (``train.csv`` with a BOM and CRLF, no header; ``test.csv`` with a
    header and name labels) or ``njustkmg`` (``annotations/``: header + code labels, and index
    labels) layout; real-pattern ids for all 6 classes; 0.5-1.5 s wavs; 2-4 frames
    ``00000.jpg, 00030.jpg, ...`` per clip."""
    from mmbench.datasets.fixtures import TRAIN_EXTRA, _write_lines, write_frames, write_wav

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


def raw_cremad(root: Path, n_per_class: int, seed: int) -> None:
    """CREMA-D as released: 1-3 s FLV1 clips at 30 fps, 16 kHz mono wavs; ids of all 6 emotions."""
    from mmbench.datasets.fixtures import TRAIN_EXTRA, write_wav
    from mmbench.datasets.raw_fixtures import clip_frames, write_video

    rng = np.random.default_rng(seed)
    k = 0
    for c, code in enumerate(CODES):
        for _ in range(max(2 * n_per_class + TRAIN_EXTRA, 6)):  # 10 % test and 10 % val: >= 1 each
            sid = f"{1001 + k % 91}_{CREMAD_SENTENCES[k % 12]}_{code}_{CREMAD_LEVELS[k % 4]}"
            k += 1
            seconds = float(rng.uniform(1.0, 3.0))
            write_wav(root / "AudioWAV" / f"{sid}.wav", seconds, rng, 200 + 90 * c)
            write_video(root / "VideoFlash" / f"{sid}.flv", clip_frames(int(seconds * 30), c, rng), 30, "flv")


SPEC = register_dataset(CremadSpec())
__all__ = ["CODES", "NAMES", "SPEC", "CremadSpec"]
