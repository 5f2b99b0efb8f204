"""What every ``mmbench data prepare`` shares: decoding with PyAV, 1-fps frames and 16 kHz wavs
as the OGM-GE scripts write them, parallel clip jobs with a progress bar, resumable writes, and
the record of what was done (``<out>/mmbench-prepare.json``).

Frames follow OGM-GE ``data/CREMAD/video_preprocessing.py`` (``video2frame_update`` with one
frame kept per second): ``fps = int(stream rate)``; frame ``count`` (0-based decode order) is kept
when ``count % fps == 0`` and saved as ``{count:05d}.jpg`` (JPEG quality 95, OpenCV's
``imencode`` default). Audio follows OGM-GE ``data/VGGSound/mp4_to_wav.py``
(``ffmpeg -acodec pcm_s16le -ar 16000``), down-mixed to mono: 16-bit PCM at 16 kHz.

Every output is written under a temporary name and renamed when complete, so a clip whose
outputs exist is finished and a rerun skips it (resume after Ctrl-C or a crash). This module
imports no torch: the worker processes start fast.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

RECORD = "mmbench-prepare.json"
JPEG_QUALITY = 95
WAV_RATE = 16000


class ClipError(Exception):
    """A clip that cannot be used (unreadable or empty video); its message names the file."""


@dataclass
class Outcome:
    """What happened to the clips of one prepare run."""

    done: list[str] = field(default_factory=list)  # clip ids whose outputs exist (new or resumed)
    resumed: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # clip id -> one line naming the file


# --------------------------------------------------------------------------- decoding
def _open(path: Path):
    import av

    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ClipError(f"{path}: unreadable video ({type(exc).__name__}: {exc})") from None


KEEP_PARTIAL_ENV = "MMBENCH_KEEP_PARTIAL"  # `data prepare --keep-partial` (read by every decoding process)


def stated_seconds(container, stream) -> float | None:
    """The duration the container (else the stream) states, in seconds; None when it states none."""
    if container.duration:
        return container.duration / 1_000_000  # av.time_base
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def truncated(decoded: float, stated: float | None, fps: int) -> bool:
    """A video whose frames cover clearly less than its stated duration (two frames of slack, 10 %)."""
    return stated is not None and decoded + 2 / fps < 0.9 * stated


def decode_frames(path: Path, keep: Callable[[int, int], bool] | None = None):
    """Yield ``(count, fps, frame as (H, W, 3) uint8 RGB)`` of the first video stream, for the
    frames ``keep(count, fps)`` accepts (all when None). Raises ``ClipError`` naming the file, also
    after the last frame when the frames cover less than the container's stated duration
    ("truncated: decoded 0.1 s of 2.5 s"; kept when ``$MMBENCH_KEEP_PARTIAL`` is 1)."""
    import av

    container = _open(path)
    try:
        if not container.streams.video:
            raise ClipError(f"{path}: no video stream")
        stream = container.streams.video[0]
        fps = max(1, int(float(stream.average_rate or stream.guessed_rate or 1)))
        decoded = 0.0
        for count, frame in enumerate(container.decode(stream)):
            decoded = max(decoded, (frame.time if frame.time is not None else count / fps) + 1 / fps)
            if keep is None or keep(count, fps):
                yield count, fps, frame.to_ndarray(format="rgb24")
        stated = stated_seconds(container, stream)
        if truncated(decoded, stated, fps) and os.environ.get(KEEP_PARTIAL_ENV) != "1":
            raise ClipError(f"{path}: truncated: decoded {decoded:.1f} s of {stated:.1f} s "
                            "(skipped; `mmbench data prepare --keep-partial` keeps such clips)")
    except av.error.FFmpegError as exc:
        raise ClipError(f"{path}: video decode failed ({type(exc).__name__}: {exc})") from None
    finally:
        container.close()


def decode_audio(path: Path, rate: int = WAV_RATE) -> np.ndarray:
    """The first audio stream as mono float32 at ``rate`` Hz (PyAV's resampler)."""
    import av

    container = _open(path)
    try:
        if not container.streams.audio:
            raise ClipError(f"{path}: no audio stream")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        chunks = []
        for frame in container.decode(container.streams.audio[0]):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    except av.error.FFmpegError as exc:
        raise ClipError(f"{path}: audio decode failed ({type(exc).__name__}: {exc})") from None
    finally:
        container.close()
    if not chunks or sum(len(c) for c in chunks) == 0:
        raise ClipError(f"{path}: no audio samples decoded")
    return np.concatenate(chunks).astype(np.float32) / 32768.0


# --------------------------------------------------------------------------- writing
def one_per_second(count: int, fps: int) -> bool:
    return count % fps == 0


def write_frames_1fps(video: Path, folder: Path) -> int:
    """OGM-GE's 1-fps frames of ``video`` into ``folder`` (written to ``folder.tmp``, renamed at
    the end); returns the number of frames. Raises ``ClipError`` when none decode."""
    return write_frames(video, folder, one_per_second)


def write_frames(video: Path, folder: Path, keep: Callable[[int, int], bool] | None = None) -> int:
    """The frames of ``video`` that ``keep(count, fps)`` accepts (all when None) as
    ``<count:05d>.jpg`` into ``folder`` (written to ``folder.tmp``, renamed at the end); returns
    the number written. Raises ``ClipError`` when none decode."""
    from PIL import Image

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n = 0
    try:
        for count, _, img in decode_frames(video, keep):
            Image.fromarray(img).save(tmp / f"{count:05d}.jpg", quality=JPEG_QUALITY)
            n += 1
        if n == 0:
            raise ClipError(f"{video}: no frames decoded")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return n


def write_wav(samples: np.ndarray, path: Path, rate: int = WAV_RATE) -> None:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    soundfile.write(str(tmp), np.clip(samples, -1, 1), rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (a copy across file systems); atomic, ``dst`` replaced."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


# --------------------------------------------------------------------------- parallel jobs
def run_jobs(jobs: dict[str, tuple], fn: Callable, n_jobs: int, desc: str, progress: bool,
             done: Callable[[str], bool]) -> Outcome:
    """Run ``fn(*args)`` for every ``{clip id: args}`` not ``done(id)`` yet, on ``n_jobs``
    spawned processes (in this process when 1), with a progress bar. ``fn`` raises ``ClipError``
    for a bad clip: it is named on one line, skipped and listed in the outcome."""
    from tqdm import tqdm

    out = Outcome()
    todo = {}
    for cid, args in jobs.items():
        if done(cid):
            out.done.append(cid)
            out.resumed += 1
        else:
            todo[cid] = args
    bar = tqdm(total=len(todo), desc=desc, unit="clip", disable=not progress or not todo, file=sys.stderr)

    def finish(cid, error):
        if error is None:
            out.done.append(cid)
        else:
            out.failed[cid] = error
            bar.write(f"skipped: {error}")
        bar.update(1)

    if n_jobs <= 1 or len(todo) <= 1:
        for cid, args in todo.items():
            finish(cid, _call(fn, args))
        # free PyAV's decoders and filter graphs now, while their slice threads exist: a process
        # forked later (DataLoader workers of a run in the same process) that collects them waits
        # forever on threads it does not have
        gc.collect()
    else:
        from mmbench.results.workers import pool_worker_init

        pool = ProcessPoolExecutor(n_jobs, mp_context=get_context("spawn"), initializer=pool_worker_init)
        try:
            futures = {pool.submit(_call, fn, args): cid for cid, args in todo.items()}
            for fut in as_completed(futures):
                finish(futures[fut], fut.result())
        except BaseException:  # Ctrl-C or SIGTERM: stop now; finished clips are kept, the rest resume
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    bar.close()
    out.done.sort()
    return out


def _call(fn, args) -> str | None:
    try:
        fn(*args)
    except ClipError as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------- the record
def write_record(out: Path, dataset: str, source: Path, outcome: Outcome, details: dict) -> Path:
    """``<out>/mmbench-prepare.json``: the dataset, source, tool versions, counts, failures and
    every choice made (split, algorithms, parameters)."""
    import av

    record = {
        "dataset": dataset,
        "source": str(Path(source).resolve()),
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "decoder": f"PyAV {av.__version__} (FFmpeg)",
        "clips": {"usable": len(outcome.done), "resumed": outcome.resumed, "failed": len(outcome.failed)},
        "failed": outcome.failed,
        **details,
    }
    path = Path(out) / RECORD
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def find_files(raw: Path, suffix: str) -> dict[str, Path]:
    """``{stem: path}`` of every ``*<suffix>`` under ``raw`` (first in sorted order wins)."""
    out: dict[str, Path] = {}
    for p in sorted(Path(raw).rglob(f"*{suffix}")):
        if p.is_file():
            out.setdefault(p.stem, p)
    return out
