"""Write a CREMA-D-format tree for the data-path benchmarks (``mmbench bench --data-only``).

    python scripts/make_cremad_tree.py DIR [--clips 900] [--frames 3] [--seed 0]

The ``ogm`` layout of ``mmbench.datasets.fixtures.write_cremad`` at real-data sizes: 16 kHz
mono wavs of 2-3 s (CREMA-D's length) and ``Image-01-FPS/<id>/`` folders of 480 x 360 jpgs
(CREMA-D's frame size), smooth class-coloured gradients plus mild noise so that they compress
like video frames rather than like white noise. 80 % of the clips are train, 20 % test.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from mmbench.datasets.cremad import CODES
from mmbench.datasets.fixtures import CREMAD_LEVELS, CREMAD_SENTENCES, _write_lines, write_wav

WIDTH, HEIGHT = 480, 360


_YY, _XX = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)


def write_frame(path: Path, rng: np.random.Generator, c: int) -> None:
    base = np.stack([(_XX / WIDTH) * 200 + 20 * c, (_YY / HEIGHT) * 180 + 10 * c, np.full_like(_XX, 120)], axis=-1)
    img = np.clip(base + rng.normal(0, 6, size=base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(path, quality=90)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--clips", type=int, default=900)
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    rows = {"train": [], "test": []}
    for k in range(a.clips):
        c = k % len(CODES)
        sid = f"{1001 + k % 91}_{CREMAD_SENTENCES[k % 12]}_{CODES[c]}_{CREMAD_LEVELS[(k // 91) % 4]}_{k:04d}"
        split = "test" if k % 5 == 4 else "train"
        rows[split].append(f"{sid},{CODES[c]}")
        write_wav(a.dir / "AudioWAV" / f"{sid}.wav", rng.uniform(2.0, 3.0), rng, 200 + 90 * c)
        folder = a.dir / "Image-01-FPS" / sid
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(a.frames):
            write_frame(folder / f"{30 * i:05d}.jpg", rng, c)
    _write_lines(a.dir / "train.csv", rows["train"], bom=True, crlf=True)
    _write_lines(a.dir / "test.csv", ["name,label"] + rows["test"])
    print(f"{a.clips} clips ({len(rows['train'])} train, {len(rows['test'])} test) in {a.dir}")


if __name__ == "__main__":
    main()
