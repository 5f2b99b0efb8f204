"""Tiny trees in the formats people *download*, the input of ``mmbench data prepare``; each
dataset's ``write_raw_fixture`` writes its own (this module holds the shared media primitives):

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
from pathlib import Path

import numpy as np

from mmbench.datasets.fixtures import TRAIN_EXTRA

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
    """Write the raw (downloaded) form of dataset ``name`` under ``root`` (its spec's
    ``write_raw_fixture``); return ``root``."""
    from mmbench.datasets.registry import DATASETS

    spec = DATASETS.get(name)
    if "raw_fixture" not in spec.capabilities():
        have = [n for n in DATASETS.names() if "raw_fixture" in DATASETS.get(n).capabilities()]
        raise ValueError(f"no raw fixture for {name!r}; raw fixtures: {', '.join(have)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    spec.write_raw_fixture(root, n_per_class, seed)
    return root




def raw_per_class(split: str, n_per_class: int) -> int:
    """Clips per class: train holds at least 5, so the carved 10 % val has one."""
    return max(n_per_class + TRAIN_EXTRA, 5) if split == "train" else n_per_class














