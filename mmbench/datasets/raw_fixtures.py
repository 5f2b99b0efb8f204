"""Tiny trees in the formats people *download*, the input of ``mmbench data prepare``:

- ``cremad``: ``AudioWAV/<id>.wav`` (16 kHz mono) and ``VideoFlash/<id>.flv`` (FLV1 video, 30 fps),
  no split lists;
- ``kinetics_sounds``: ``<split>/<label>/<ytid>_<start:06d>_<end:06d>.mp4`` (MPEG-4 video + AAC
  stereo audio at 22.05 kHz) and a Kinetics-style ``kinetics_sounds.csv``
  (``label,youtube_id,time_start,time_end,split``);
- ``vggsound``: ``video/<ytid>_<start:06d>.mp4`` and the official ``vggsound.csv``
  (``youtube_id,start_seconds,label,split``, no header);
- ``nvgesture``: ``Video_data/class_XX/subjectYY_rZ/sk_color.avi`` and ``sk_depth.avi`` (MJPEG)
  and both official ``.lst`` files (no flow: nobody ships it);
- ``twitter15`` / ``sarcasm``: the public releases' folder shapes (TomBERT ``absa_data/`` +
  ``IJCAI2019_data/twitter2015_images/``; HFM ``text/`` + ``dataset_image/``).

Videos are written with PyAV, the library ``prepare`` decodes them with. Also the fixture marker
(``mmbench-fixture.json``) that tells ``mmbench data check`` which preset a fixture fits.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from mmbench.datasets.fixtures import TRAIN_EXTRA, _yt_id, write_wav

MARKER = "mmbench-fixture.json"
RAW_SIZE = (32, 24)  # width, height of the raw videos


# --------------------------------------------------------------------------- fixture marker
def mark_fixture(root: Path, dataset: str, spec) -> str:
    """Write ``<root>/mmbench-fixture.json`` naming the preset the fixture fits (``smoke`` where
    the dataset has one: tiny media, no pretrained weights); return that preset."""
    preset = "smoke" if "smoke" in spec.presets() else "paper"
    (Path(root) / MARKER).write_text(json.dumps({"dataset": dataset, "preset": preset,
                                                  "written_by": "mmbench data fixture"}, indent=1) + "\n")
    return preset


def fixture_preset(root: Path, dataset: str) -> str | None:
    """The preset a fixture at ``root`` fits, or None when ``root`` is not a fixture of ``dataset``."""
    try:
        data = json.loads((Path(root) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("dataset") != dataset:
        return None
    preset = data.get("preset")
    return preset if isinstance(preset, str) else None


# --------------------------------------------------------------------------- media
def clip_frames(n: int, hue: int, rng: np.random.Generator, size=RAW_SIZE) -> np.ndarray:
    """(n, H, W, 3) uint8: a class colour, a moving bar (so frames differ) and noise."""
    w, h = size
    base = np.array([(hue * 53) % 256, (hue * 101) % 256, (hue * 197) % 256], dtype=np.float32)
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        img = base + rng.normal(0, 12, size=(h, w, 3))
        img[:, (2 * i) % w : (2 * i) % w + 4] = 255
        out[i] = np.clip(img, 0, 255)
    return out


def write_video(path: Path, frames: np.ndarray, fps: int, codec: str, audio: np.ndarray | None = None,
                sample_rate: int = 22050) -> None:
    """Encode ``frames`` (n, H, W, 3 uint8) with PyAV; ``audio`` (channels, samples) float32 adds
    an AAC track. The container follows the suffix (flv, mp4, avi)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=fps)
        v.width, v.height = frames.shape[2], frames.shape[1]
        v.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        a = None
        if audio is not None:
            a = out.add_stream("aac", rate=sample_rate)
            a.layout = "stereo" if audio.shape[0] == 2 else "mono"
        for img in frames:
            for packet in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in v.encode():
            out.mux(packet)
        if a is not None:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio, dtype=np.float32), format="fltp",
                                               layout=a.layout.name)
            frame.sample_rate = sample_rate
            for packet in a.encode(frame):
                out.mux(packet)
            for packet in a.encode():
                out.mux(packet)


def tone(seconds: float, freq: float, rng: np.random.Generator, sample_rate: int, channels: int) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.03 * rng.standard_normal(len(t))
    return np.repeat(x[None].astype(np.float32), channels, axis=0)


# --------------------------------------------------------------------------- writers
def write_raw(name: str, root, n_per_class: int = 2, seed: int = 0) -> Path:
    """Write the raw (downloaded) form of dataset ``name`` under ``root``; return ``root``."""
    writers = {"cremad": raw_cremad, "kinetics_sounds": raw_kinetics_sounds, "vggsound": raw_vggsound,
               "nvgesture": raw_nvgesture, "twitter15": raw_twitter15, "sarcasm": raw_sarcasm}
    if name not in writers:
        raise ValueError(f"no raw fixture for {name!r}; raw fixtures: {', '.join(writers)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    writers[name](root, n_per_class, seed)
    return root


def raw_cremad(root: Path, n_per_class: int, seed: int) -> None:
    """CREMA-D as released: 1-3 s FLV1 clips at 30 fps, 16 kHz mono wavs; ids of all 6 emotions."""
    from mmbench.datasets.cremad import CODES
    from mmbench.datasets.fixtures import CREMAD_LEVELS, CREMAD_SENTENCES

    rng = np.random.default_rng(seed)
    k = 0
    for c, code in enumerate(CODES):
        for _ in range(max(2 * n_per_class + TRAIN_EXTRA, 6)):  # 10 % test and 10 % val: >= 1 each
            sid = f"{1001 + k % 91}_{CREMAD_SENTENCES[k % 12]}_{code}_{CREMAD_LEVELS[k % 4]}"
            k += 1
            seconds = float(rng.uniform(1.0, 3.0))
            write_wav(root / "AudioWAV" / f"{sid}.wav", seconds, rng, 200 + 90 * c)
            write_video(root / "VideoFlash" / f"{sid}.flv", clip_frames(int(seconds * 30), c, rng), 30, "flv")


def _per_class(split: str, n_per_class: int) -> int:
    """Clips per class: train holds at least 5, so the carved 10 % val has one."""
    return max(n_per_class + TRAIN_EXTRA, 5) if split == "train" else n_per_class


KS_RAW_CLASSES = ("playing drums", "playing piano", "dog barking")


def raw_kinetics_sounds(root: Path, n_per_class: int, seed: int) -> None:
    """Kinetics-Sounds clips (5 s, 2 fps MPEG-4 + AAC stereo 22.05 kHz) under
    ``<split>/<label>/``, and the Kinetics-style csv with a header."""
    rng = np.random.default_rng(seed)
    lines = ["label,youtube_id,time_start,time_end,split"]
    for split in ("train", "test"):
        for c, label in enumerate(KS_RAW_CLASSES):
            for _ in range(_per_class(split, n_per_class)):
                ytid, start = _yt_id(rng), int(rng.integers(0, 300))
                lines.append(f"{label},{ytid},{start},{start + 10},{split}")
                path = root / split / label / f"{ytid}_{start:06d}_{start + 10:06d}.mp4"
                write_video(path, clip_frames(10, c, rng), 2, "mpeg4", tone(5.0, 300 + 150 * c, rng, 22050, 2))
    (root / "kinetics_sounds.csv").write_text("\n".join(lines) + "\n")


VGG_RAW_CLASSES = ("dog barking", "playing violin, fiddle", "rain")


def raw_vggsound(root: Path, n_per_class: int, seed: int) -> None:
    """VGGSound clips ``video/<ytid>_<start:06d>.mp4`` and ``vggsound.csv`` without a header
    (a label with a comma is quoted, as in the official file)."""
    import csv

    rng = np.random.default_rng(seed)
    rows = []
    for split in ("train", "test"):
        for c, label in enumerate(VGG_RAW_CLASSES):
            for _ in range(_per_class(split, n_per_class)):
                ytid, start = _yt_id(rng), int(rng.integers(0, 300))
                rows.append([ytid, str(start), label, split])
                write_video(root / "video" / f"{ytid}_{start:06d}.mp4", clip_frames(10, c, rng), 2, "mpeg4",
                            tone(5.0, 250 + 200 * c, rng, 22050, 1))
    with open(root / "vggsound.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def raw_nvgesture(root: Path, n_per_class: int, seed: int, n_classes: int = 3) -> None:
    """NVGesture as released: MJPEG ``sk_color.avi`` / ``sk_depth.avi`` of 100 frames per sample,
    80-frame spans in both official ``.lst`` files; train has 5 samples per class (carved val)."""
    from mmbench.datasets.nvgesture import LST, SPAN

    rng = np.random.default_rng(seed)
    subject = 1
    for split, n in (("train", max(n_per_class, 5)), ("test", n_per_class)):
        lines = []
        for c in range(1, n_classes + 1):
            for _ in range(n):
                rel = f"Video_data/class_{c:02d}/subject{subject}_r{subject % 3}"
                subject += 1
                start = int(rng.integers(0, 15))
                frames = clip_frames(start + SPAN + 5, c, rng)
                write_video(root / rel / "sk_color.avi", frames, 30, "mjpeg")
                gray = np.repeat(frames.mean(axis=3, keepdims=True).astype(np.uint8), 3, axis=3)
                write_video(root / rel / "sk_depth.avi", gray, 30, "mjpeg")
                lines.append(f"path:./{rel} depth:sk_depth:{start}:{start + SPAN} color:sk_color:{start}:"
                             f"{start + SPAN} duo_left:duo_left:{start}:{start + SPAN} label:{c}")
        (root / LST["official"][0 if split == "train" else 1]).write_text("\n".join(lines) + "\n")


def raw_twitter15(root: Path, n_per_class: int, seed: int) -> None:
    """The TomBERT release's shape: ``absa_data/twitter2015/{train,dev,test}.tsv`` and the images
    in ``IJCAI2019_data/twitter2015_images/``."""
    from mmbench.datasets.registry import DATASETS

    tmp = root / "_tombert"
    DATASETS.get("twitter15").write_fixture(tmp, "tombert", n_per_class, seed)
    (root / "absa_data" / "twitter2015").mkdir(parents=True, exist_ok=True)
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        shutil.move(str(tmp / name), root / "absa_data" / "twitter2015" / name)
    (root / "IJCAI2019_data").mkdir(exist_ok=True)
    shutil.move(str(tmp / "twitter2015_images"), root / "IJCAI2019_data" / "twitter2015_images")
    shutil.rmtree(tmp)


def raw_sarcasm(root: Path, n_per_class: int, seed: int) -> None:
    """The HFM release's shape: ``text/{train,valid2,test2}.txt`` and ``dataset_image/<id>.jpg``."""
    from mmbench.datasets.registry import DATASETS

    tmp = root / "_hfm"
    DATASETS.get("sarcasm").write_fixture(tmp, "hfm", n_per_class, seed)
    shutil.move(str(tmp / "text"), root / "text")
    images = tmp / "images" if (tmp / "images").is_dir() else tmp / "dataset_image"
    shutil.move(str(images), root / "dataset_image")
    shutil.rmtree(tmp)
