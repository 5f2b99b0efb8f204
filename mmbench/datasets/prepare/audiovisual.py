"""``mmbench data prepare`` for CREMA-D, Kinetics-Sounds and VGGSound: from the downloaded
videos to the ``ogm`` layout each loader reads (``cremad.py``, ``kinetics_sounds.py``, ``vggsound.py``).

- CREMA-D: ``<raw>/VideoFlash/<id>.flv`` -> ``Image-01-FPS/<id>/`` (1 fps, OGM-GE
  ``video_preprocessing.py``); ``<raw>/AudioWAV/<id>.wav`` hard-linked (or copied) to
  ``AudioWAV/``; ``train.csv`` / ``test.csv`` (``id,CODE``): the lists given with ``--split``
  (e.g. OGM-GE's ``train.csv`` and ``test.csv``, any format the loader reads), else a stratified
  split of every usable clip, 10 % test (OGM-GE's 744 of 7,442), seeded by ``--split-seed``
  (``base.stratified_carve``, the val carve's algorithm), recorded in ``mmbench-prepare.json``.
- Kinetics-Sounds: clips ``<ytid>_<start:06d>_<end:06d>.mp4`` anywhere under ``<raw>`` and a
  Kinetics-style csv (header ``label,youtube_id,time_start,time_end,split``) ->
  ``visual/<id>/`` (1 fps), ``audio/<id>.wav`` (16 kHz mono), ``my_{train,val,test}.txt``
  (``id,10,label_index``) and ``classes.txt`` (sorted names of every csv row, as the loader derives it).
- VGGSound: clips ``<ytid>_<start>.mp4`` (the start padded to 6 digits or as written) under
  ``<raw>`` and the official ``vggsound.csv`` -> ``{split}-videos/{split}-set-img/Image-01-FPS/
  <id>.mp4/`` (OGM-GE keeps ``.mp4`` in the folder name), ``{split}-audios/{split}-set/<id>.wav``,
  ``vggsound.csv`` and ``classes.txt``.

Index files list only the clips whose outputs exist, so ``mmbench data check`` passes; clips
listed in the csv but not downloaded are counted in the record.
"""

from __future__ import annotations

import csv
from pathlib import Path

from mmbench.datasets.prepare import common
from mmbench.results.errors import DataError


def clip_job(video: Path, frames: Path, wav: Path, wav_source: Path | None) -> None:
    """One clip: its wav (linked from ``wav_source``, else decoded from the video) and its 1-fps
    frames (the folder appears last: it marks the clip finished)."""
    if wav_source is not None:
        common.link_or_copy(wav_source, wav)
    else:
        common.write_wav(common.decode_audio(video), wav)
    common.write_frames_1fps(video, frames)


def _run(jobs: dict[str, tuple], n_jobs: int, progress: bool, desc: str) -> common.Outcome:
    return common.run_jobs(jobs, clip_job, n_jobs, desc, progress,
                           done=lambda cid: jobs[cid][1].is_dir() and jobs[cid][2].is_file())


# --------------------------------------------------------------------------- CREMA-D
def prepare_cremad(raw: Path, out: Path, n_jobs: int, progress: bool, split_files=(), split_seed: int = 0,
                   **_) -> tuple[common.Outcome, dict]:
    from mmbench.datasets.base import stratified_carve
    from mmbench.datasets.cremad import CODES

    videos = common.find_files(raw / "VideoFlash", ".flv") if (raw / "VideoFlash").is_dir() else {}
    if not videos:
        raise DataError(f"no {raw}/VideoFlash/*.flv: point --from at the CREMA-D download (VideoFlash/, AudioWAV/)")
    jobs, no_wav = {}, []
    for sid, video in sorted(videos.items()):
        wav = raw / "AudioWAV" / f"{sid}.wav"
        if not wav.is_file():
            no_wav.append(sid)
            continue
        jobs[sid] = (video, out / "Image-01-FPS" / sid, out / "AudioWAV" / f"{sid}.wav", wav)
    outcome = _run(jobs, n_jobs, progress, "cremad")
    for sid in no_wav:
        outcome.failed[sid] = f"{raw / 'AudioWAV' / (sid + '.wav')}: no wav for {videos[sid]}"
    usable = set(outcome.done)
    labels = {sid: CODES.index(sid.split("_")[2]) for sid in usable if len(sid.split("_")) > 2
              and sid.split("_")[2] in CODES}
    if split_files:
        splits, how = _given_splits(split_files, usable), {"split": "given", "files": [str(f) for f in split_files]}
    else:
        ids = sorted(labels)
        train, test = stratified_carve([labels[i] for i in ids], 0.1, split_seed)
        splits = {"train": [ids[i] for i in train], "test": [ids[i] for i in test]}
        how = {"split": "stratified", "test_fraction": 0.1, "split_seed": split_seed,
               "algorithm": "mmbench.datasets.base.stratified_carve over the usable clips in sorted id order"}
    for split, ids in splits.items():
        lines = [f"{sid},{CODES[labels[sid]]}" for sid in ids if sid in labels]
        (out / f"{split}.csv").write_text("".join(line + "\n" for line in lines))
    how["sizes"] = {s: len(v) for s, v in splits.items()}
    return outcome, {"layout": "ogm", "frames": "1 fps, OGM-GE video_preprocessing.py", "audio": "wav linked", **how}


def _given_splits(files, usable: set[str]) -> dict[str, list[str]]:
    """Ids per split from the ``--split`` files (named by the split in their file name: train,
    val, test), keeping the usable clips."""
    from mmbench.datasets.registry import DATASETS

    spec = DATASETS.get("cremad")
    out: dict[str, list[str]] = {}
    for f in files:
        f = Path(f)
        split = next((s for s in ("train", "val", "test") if s in f.stem.lower()), None)
        if split is None or not f.is_file():
            raise DataError(f"--split {f}: expected an existing file named after its split (train, val or test)")
        entries, problems = spec.parse_index(f, split, "ogm")
        if problems:
            raise DataError(f"--split {f}: {problems[0].message}")
        out[split] = [sid for _, sid, _, _ in entries if sid in usable]
    if "train" not in out or "test" not in out:
        raise DataError("--split needs a train and a test list (e.g. OGM-GE's train.csv and test.csv)")
    return out


# --------------------------------------------------------------------------- Kinetics-Sounds
def _csv_file(raw: Path, given: Path | None, default: str) -> Path:
    if given is not None:
        if not Path(given).is_file():
            raise DataError(f"--csv {given} does not exist")
        return Path(given)
    if (raw / default).is_file():
        return raw / default
    found = sorted(raw.glob("*.csv"))
    if len(found) != 1:
        raise DataError(f"no {raw / default}: pass the class/split csv with --csv FILE")
    return found[0]


def _classes(out: Path, names) -> list[str]:
    classes = sorted(set(names))
    (out / "classes.txt").write_text("".join(c + "\n" for c in classes))
    return classes


SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "validate": "val", "validation": "val",
               "test": "test", "testing": "test"}


def prepare_kinetics_sounds(raw: Path, out: Path, n_jobs: int, progress: bool, csv_file=None,
                            **_) -> tuple[common.Outcome, dict]:
    table = _csv_file(raw, csv_file, "kinetics_sounds.csv")
    with open(table, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    need = {"label", "youtube_id", "time_start", "time_end", "split"}
    if not rows or not need <= set(rows[0]):
        raise DataError(f"{table}: expected a header with {', '.join(sorted(need))} (the Kinetics csv)")
    videos = common.find_files(raw, ".mp4")
    classes = _classes(out, (r["label"] for r in rows))
    jobs, meta, absent = {}, {}, 0
    for r in rows:
        sid = f"{r['youtube_id']}_{int(float(r['time_start'])):06d}_{int(float(r['time_end'])):06d}"
        split = SPLIT_NAMES.get(r["split"].strip().lower())
        if split is None:
            raise DataError(f"{table}: unknown split {r['split']!r} for {sid}; expected train, val or test")
        if sid not in videos:
            absent += 1
            continue
        jobs[sid] = (videos[sid], out / "visual" / sid, out / "audio" / f"{sid}.wav", None)
        meta[sid] = (split, classes.index(r["label"]))
    outcome = _run(jobs, n_jobs, progress, "kinetics_sounds")
    sizes = {}
    for split in ("train", "val", "test"):
        lines = [f"{sid},10,{meta[sid][1]}" for sid in outcome.done if meta[sid][0] == split]
        if lines or split != "val":
            (out / f"my_{split}.txt").write_text("".join(line + "\n" for line in lines))
            sizes[split] = len(lines)
    return outcome, {"layout": "ogm", "csv": str(table), "not_downloaded": absent, "sizes": sizes,
                     "frames": "1 fps, OGM-GE video_preprocessing.py", "audio": "16 kHz mono PCM-16"}


# --------------------------------------------------------------------------- VGGSound
def prepare_vggsound(raw: Path, out: Path, n_jobs: int, progress: bool, csv_file=None,
                     **_) -> tuple[common.Outcome, dict]:
    table = _csv_file(raw, csv_file, "vggsound.csv")
    with open(table, newline="", encoding="utf-8-sig") as fh:
        rows = [r for r in csv.reader(fh) if r]
    if not rows or len(rows[0]) < 4:
        raise DataError(f"{table}: expected rows youtube_id,start_seconds,label,split (the official vggsound.csv)")
    videos = common.find_files(raw, ".mp4")
    _classes(out, (r[2] for r in rows))
    jobs, kept, absent = {}, [], 0
    for r in rows:
        ytid, start, split = r[0], r[1].strip(), SPLIT_NAMES.get(r[3].strip().lower(), "")
        if split not in ("train", "test"):
            raise DataError(f"{table}: unknown split {r[3]!r} for {ytid}; expected train or test")
        sid = next((s for s in (f"{ytid}_{int(start):06d}", f"{ytid}_{start}") if s in videos), None)
        if sid is None:
            absent += 1
            continue
        frames = out / f"{split}-videos" / f"{split}-set-img" / "Image-01-FPS" / f"{sid}.mp4"
        jobs[sid] = (videos[sid], frames, out / f"{split}-audios" / f"{split}-set" / f"{sid}.wav", None)
        kept.append((sid, r))
    outcome = _run(jobs, n_jobs, progress, "vggsound")
    usable = set(outcome.done)
    with open(out / "vggsound.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(r for sid, r in kept if sid in usable)
    return outcome, {"layout": "ogm", "csv": str(table), "not_downloaded": absent,
                     "frames": "1 fps, OGM-GE video_preprocessing.py",
                     "audio": "16 kHz mono PCM-16 (OGM-GE mp4_to_wav.py, down-mixed)"}
