"""``mmbench data prepare nvgesture``: from the official release (``Video_data/class_XX/
subjectYY_rZ/sk_color.avi``, ``sk_depth.avi`` and the ``.lst`` files) to what the loader reads
(``mmbench/datasets/nvgesture.py``): ``sk_color/<frame:05d>.jpg`` and ``sk_depth/<frame:05d>.jpg`` frame
folders (every frame, named by its 0-based index in the video, so the ``.lst`` spans address
them), the ``.lst`` files, and optical flow ``Video_data/flow_data/{train,test}/<i>.npy``
(i = 0-based line of that split's ``.lst``).

No public script produces NVGesture's flow, so the recipe is ours and is recorded in
``mmbench-prepare.json``: the colour frames start..start+80 of the span (the one after the span
too, when the video has it) are converted to grey and resized to ``size`` x ``size`` (bilinear,
the loader's 256 for ``paper``); flow between consecutive frames with OpenCV; values clipped to
[-20, 20] and scaled to [-1, 1] (the I3D convention of ``piergiaj/pytorch-i3d``); a span without
a next frame repeats its last flow. Stored float32 (size, size, 2, 80).

Algorithms: ``farneback`` (default: ``cv2.calcOpticalFlowFarneback`` in core OpenCV, the
parameters of OpenCV's own sample: pyr_scale 0.5, levels 3, winsize 15, iterations 3, poly_n 5,
poly_sigma 1.2) or ``tvl1`` (Dual TV-L1, the I3D paper's choice, ``cv2.optflow`` from
``opencv-contrib-python-headless``; refused with one line when that package is absent).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmbench.datasets.prepare import common
from mmbench.results.errors import DataError

SPAN = 80
BOUND = 20.0
FARNEBACK = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2}
ALGORITHMS = ("farneback", "tvl1")


def flow_backend(algorithm: str):
    """A function (prev, next) grey uint8 -> (H, W, 2) float32 displacement."""
    import cv2

    if algorithm == "farneback":
        p = FARNEBACK
        return lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, p["pyr_scale"], p["levels"], p["winsize"],
                                                         p["iterations"], p["poly_n"], p["poly_sigma"], 0)
    if algorithm == "tvl1":
        if not hasattr(cv2, "optflow"):
            raise DataError("--flow tvl1 needs OpenCV's contrib modules: pip install opencv-contrib-python-headless "
                            "(instead of opencv-python-headless), or use --flow farneback")
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        return lambda a, b: tvl1.calc(a, b, None)
    raise DataError(f"unknown flow algorithm {algorithm!r}; choose {', '.join(ALGORITHMS)}")


def write_sensor_frames(video: Path, folder: Path) -> int:
    """Every frame of ``video`` as ``<count:05d>.jpg`` (folder written as ``.tmp``, then renamed)."""
    return common.write_frames(video, folder)


def span_flow(color: Path, start: int, size: int, algorithm: str) -> np.ndarray:
    """(size, size, 2, 80) float32 flow of the colour frames start..start+80 (see the module doc)."""
    import cv2
    from PIL import Image

    flow = flow_backend(algorithm)
    grey = []
    for f in range(start, start + SPAN + 1):
        path = color / f"{f:05d}.jpg"
        if not path.is_file():
            break
        img = np.asarray(Image.open(path).convert("L"))
        grey.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR))
    if len(grey) < 2:
        raise common.ClipError(f"{color}: fewer than 2 frames from {start}: no flow")
    out = np.zeros((size, size, 2, SPAN), dtype=np.float32)
    last = None
    for t in range(SPAN):
        if t + 1 < len(grey):
            last = np.clip(flow(grey[t], grey[t + 1]), -BOUND, BOUND) / BOUND
        out[..., t] = last
    return out


def sample_job(raw_dir: Path, sample_dir: Path, start: int, flow_file: Path, size: int, algorithm: str) -> None:
    """One sample: both sensors' frames (skipped when their folder exists), then its flow."""
    import os

    for sensor in ("sk_color", "sk_depth"):
        video = raw_dir / f"{sensor}.avi"
        target = sample_dir / sensor
        if not target.is_dir():
            if not video.is_file():
                raise common.ClipError(f"{video}: missing")
            write_sensor_frames(video, target)
    arr = span_flow(sample_dir / "sk_color", start, size, algorithm)
    flow_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = flow_file.with_name(flow_file.stem + ".tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, flow_file)


def prepare_nvgesture(raw: Path, out: Path, n_jobs: int, progress: bool, flow: str = "farneback",
                      size: int = 256, **_) -> tuple[common.Outcome, dict]:
    from mmbench.datasets.nvgesture import LST, read_lst

    flow_backend(flow)  # refuse a missing algorithm before any work
    layout = next((k for k, (train, _) in LST.items() if (raw / train).is_file()), None)
    if layout is None:
        raise DataError(f"no {raw / LST['official'][0]}: point --from at the NVGesture release (.lst files, Video_data/)")
    jobs, lines = {}, {}
    for i, split in enumerate(("train", "test")):
        src = raw / LST[layout][i]
        rows, bad, unknown = read_lst(src, out)
        if bad or unknown:
            raise DataError(f"{src}: {(bad + unknown)[0]}")
        text = [line for line in src.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        for r in rows:
            lines[f"{split}/{r['index']}"] = text[r["index"]]
            staged = out / "Video_data" / "flow_data" / "_by_line" / split / f"{r['index']}.npy"
            jobs[f"{split}/{r['index']}"] = (raw / r["rel"], r["dir"], r["color"][1], staged, size, flow)
    outcome = common.run_jobs(jobs, sample_job, n_jobs, "nvgesture", progress,
                              done=lambda cid: jobs[cid][3].is_file() and all(
                                  (jobs[cid][1] / s).is_dir() for s in ("sk_color", "sk_depth")))
    sizes = _write_index(out, LST[layout], jobs, lines, set(outcome.done))
    return outcome, {"layout": layout, "sizes": sizes,
                     "flow": {"algorithm": flow, "size": size, "frames": SPAN, "bound": BOUND, "scaled_to": [-1, 1],
                              "input": "grey colour frames, bilinear resize",
                              **({"parameters": FARNEBACK} if flow == "farneback" else {})}}


def _write_index(out: Path, names: tuple[str, str], jobs: dict, lines: dict, usable: set[str]) -> dict[str, int]:
    """The ``.lst`` files without the samples that failed, and each kept sample's flow linked to
    its new line number (``flow_data/<split>/<i>.npy``)."""
    sizes = {}
    for i, split in enumerate(("train", "test")):
        kept = [cid for cid in jobs if cid.startswith(f"{split}/") and cid in usable]
        kept.sort(key=lambda cid: int(cid.split("/")[1]))
        for k, cid in enumerate(kept):
            common.link_or_copy(jobs[cid][3], out / "Video_data" / "flow_data" / split / f"{k}.npy")
        (out / names[i]).write_text("".join(lines[cid] + "\n" for cid in kept))
        sizes[split] = len(kept)
    return sizes
