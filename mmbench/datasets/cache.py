"""The packed decoded cache of the audio-visual datasets (``mmbench data cache``).

Decoding a wav (resample + STFT) and jpgs every epoch dominates data loading on CPU. The cache
decodes every present clip once into three memory-mapped ``.npy`` files:

- ``audio.npy``: ``(N, 1, F, T)`` float16, the spectrogram item of the preset (deterministic
  presets only: a random audio start, VGGSound ``ogm``, or precomputed audio are refused);
- ``frames.npy``: ``(M, 3, S, S)`` uint8, *every* frame of each clip resized to the training
  resolution with the test transform's ``Resize((S, S))``; ``offsets.npy`` ``(N + 1,)`` gives each
  clip's frame range, so frame sampling (segment / first, any ``data.frames``) still happens at
  load time;
- ``meta.json``, written last: dataset, preset key, the index digest and the ``index`` of each row.

``data.cache.max_frames = K`` stores at most K frames a clip (``cached_frames``), to bound the size
of long clips at high resolution. It lives in ``<root>/.mmbench-cache/<dataset>-<key>/`` (or
``data.cache.dir``; the user cache when the root is read-only), where ``key`` hashes the resolved
options that change the decoded arrays (audio options, fbank options, audio source, image size,
``max_frames``). The loader uses it automatically (``data.cache.mode = "auto"``) when its index
digest matches the index files and it holds every requested clip; a stale cache is refused with
a message to rebuild; ``mode = "off"`` ignores it and ``"require"`` insists on it. A run decides
``auto`` when it starts (``concrete_mode``), so its identity records ``require`` or ``off``.

Batches: ``CachedAVDataset.get_batch(indices)`` builds a whole batch (the harness's ``EpochLoader``
asks for it) equal to ``default_collate`` of the items, without stacking 64 spectrograms of 1.28 MB
item by item; its memory is recycled between batches in the main process
(``batch_memory.Recycled``).

``data.cache.augment = "device"`` hands ``get_batch``'s frames over as stored (uint8, sampled but
not cropped) and the spectrograms as float16; the loader moves them to the device, where
``device_augment.BatchAugment`` crops, flips and normalises the whole batch (``device_transform``).
``"loader"`` (the default) does it here, frame by frame.

Equivalence: test items equal the decoded-from-files items up to float16 rounding of the
spectrogram (frames are bit-identical). Train crops are drawn on the S x S resized frame instead
of the original frame (``frames.uint8_transform``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mmbench.datasets import audio as audio_ops
from mmbench.datasets import frames as frame_ops
from mmbench.datasets.base import BuiltDataset, Problem
from mmbench.datasets.batch_memory import batch_tensor, label_tensors
from mmbench.datasets.device_augment import BatchAugment
from mmbench.results.errors import DataError

CACHE_VERSION = 2  # 2: frames resized by the tensor decode path (frames.resize_uint8), not PIL
META = "meta.json"
AUGMENT_CHOICES = ("loader", "device")


def max_frames(opts: dict) -> int:
    return int((opts.get("cache") or {}).get("max_frames", 0) or 0)


def decoded_options(spec, opts: dict) -> dict:
    out = {
        "dataset": spec.name,
        "version": CACHE_VERSION,
        "audio": opts.get("audio"),
        "fbank": opts.get("fbank"),
        "audio_source": opts.get("audio_source", "wav"),
        "image_size": int(opts["image_size"]),
    }
    if max_frames(opts):
        out["max_frames"] = max_frames(opts)
        out["frame_sampling"] = opts.get("frame_sampling", "segment")
    return out


def cached_frames(files: list, opts: dict) -> list:
    """The frames of a clip the cache stores: all of them, or with ``data.cache.max_frames = K``
    the first K (``first`` sampling) or the K segment middles (``segment`` sampling). K bounds the
    cache size of long clips (VGGSound at 384 px: 442 KB a frame); train then draws among the K."""
    k = max_frames(opts)
    if not k or len(files) <= k:
        return files
    if opts.get("frame_sampling", "segment") == "first":
        return files[:k]
    return [files[i] for i in frame_ops.segment_indices(len(files), k, train=False)]


def cache_key(spec, opts: dict) -> str:
    text = json.dumps(decoded_options(spec, opts), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path(spec, root: Path, opts: dict) -> Path:
    """``data.cache.dir``, else ``<root>/.mmbench-cache`` when it exists or the root is writable,
    else the user cache (``~/.cache/mmbench/<dataset>-<root hash>``)."""
    base = (opts.get("cache") or {}).get("dir") or ""
    name = f"{spec.name}-{cache_key(spec, opts)}"
    if base:
        return Path(base).expanduser() / name
    local = Path(root) / ".mmbench-cache"
    if local.is_dir() or os.access(root, os.W_OK):
        return local / name
    from mmbench.datasets.audiovisual import user_cache_dir

    tag = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:8]
    return user_cache_dir() / f"cache-{tag}" / name


def index_digest(index) -> str:
    """sha256 over every index row (index, id, split, label): a changed index file changes it."""
    h = hashlib.sha256()
    for r in index.rows:
        h.update(f"{r.index}\t{r.id}\t{r.split}\t{r.label}\n".encode())
    return h.hexdigest()


def augment_on_device(opts: dict) -> bool:
    """``data.cache.augment``: "device" (batched, on the training device) or "loader" (default)."""
    value = (opts.get("cache") or {}).get("augment", "loader")
    if value not in AUGMENT_CHOICES:
        raise DataError(f"data.cache.augment={value!r}: choose loader or device")
    return value == "device"


def unsupported(opts: dict) -> str | None:
    if opts.get("audio_source", "wav") != "wav":
        return "precomputed audio is loaded as it is; the decoded cache is for deterministic presets only"
    if not audio_ops.is_deterministic(opts["audio"]):
        return "this preset draws a random audio start per epoch; the decoded cache is for deterministic presets only"
    return None


class DecodedCache:
    """An opened cache directory; arrays are memory-mapped lazily (once per worker process)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.meta = json.loads((self.path / META).read_text())
        self.position = {int(i): p for p, i in enumerate(self.meta["indices"])}
        self._arrays = None

    def arrays(self):
        """The memory-mapped arrays; a damaged cache (truncated, rewritten) names itself and the
        command that rebuilds it (``DataError``)."""
        if self._arrays is None:
            try:
                arrays = tuple(np.load(self.path / f, mmap_mode="r") for f in ("audio.npy", "frames.npy", "offsets.npy"))
            except (OSError, ValueError, EOFError) as exc:
                raise DataError(self.damaged(exc)) from None
            n_frames = int(arrays[2][-1]) if len(arrays[2]) else 0
            if len(arrays[0]) != len(self.meta["indices"]) or len(arrays[1]) != n_frames:
                raise DataError(self.damaged("its arrays do not match its meta.json"))
            self._arrays = arrays
        return self._arrays

    def damaged(self, why) -> str:
        what = str(why).strip().splitlines()[0] if str(why).strip() else type(why).__name__
        return (f"the decoded cache {self.path} is damaged ({what}); rebuild it with `mmbench data cache "
                f"{self.meta.get('dataset', '<dataset>')} --root <data root> --rebuild`, or delete the folder")

    def __getstate__(self):  # DataLoader workers re-open the memory maps
        state = dict(self.__dict__)
        state["_arrays"] = None
        return state

    def stale_reason(self, spec, opts: dict, index, rows) -> str | None:
        if self.meta.get("key") != cache_key(spec, opts) or self.meta.get("version") != CACHE_VERSION:
            return "it was built for other preprocessing options"
        if self.meta.get("index_digest") != index_digest(index):
            return "the index files changed since it was built"
        absent = [r for r in rows if r.index not in self.position]
        if absent:
            return f"{len(absent)} requested clips are not in it (e.g. {absent[0].where})"
        return None


def _open(path: Path) -> DecodedCache | None:
    if not (path / META).is_file():
        return None
    try:
        return DecodedCache(path)
    except (OSError, ValueError, KeyError):
        return None


def concrete_mode(spec, root: Path, cfg) -> str:
    """``data.cache.mode`` as a run at ``root`` will use it, for the run's identity: ``auto``
    becomes ``require`` when a cache holding every clip of the run's splits is there and
    ``off`` when there is none (or the preset cannot be cached), since the two paths give
    different numbers (train crops drawn on the resized frame; float16 spectrograms). A stale
    cache, or data that cannot be read, keeps ``auto``: building the dataset then raises the
    one-line error that says what to do."""
    opts = spec.options(cfg)
    mode = (opts.get("cache") or {}).get("mode", "auto")
    try:
        if mode != "auto" or augment_on_device(opts):
            return mode
        if unsupported(opts):
            return "off"
        cache = _open(cache_path(spec, root, opts))
        if cache is None:
            return "off"
        index = spec.load_index(Path(root), cfg)
        wanted = {i for ids in spec.splits(root, cfg).values() for i in ids}
        rows = [r for r in index.rows if r.index in wanted]
        return "auto" if cache.stale_reason(spec, opts, index, rows) else "require"
    except (DataError, OSError, ValueError, KeyError):
        return "auto"


def lookup(spec, root: Path, cfg, index, rows) -> DecodedCache | None:
    """The cache to read ``rows`` from, None to decode files; raises on a stale cache."""
    opts = spec.options(cfg)
    mode = (opts.get("cache") or {}).get("mode", "auto")
    if augment_on_device(opts):
        mode = "require"  # the decode path has no batched augmentation: never fall back to it silently
    if mode == "off":
        return None
    path = cache_path(spec, root, opts)
    why = unsupported(opts)
    if why:
        if mode == "require":
            raise DataError(f"data.cache.mode=require (or data.cache.augment=device), but {why}")
        return None
    cache = _open(path)
    if cache is None:
        if mode == "require":
            raise DataError(f"no decoded cache at {path}: run `mmbench data cache {spec.name} --root {root}`")
        return None
    stale = cache.stale_reason(spec, opts, index, rows)
    if stale:
        raise DataError(
            f"the decoded cache at {path} is stale ({stale}): rebuild it with `mmbench data cache {spec.name} "
            f"--root {root}`, delete it, or set data.cache.mode=off"
        )
    return cache


def check_cache(spec, root: Path, cfg, index) -> list[Problem]:
    opts = spec.options(cfg)
    mode = (opts.get("cache") or {}).get("mode", "auto")
    try:
        if augment_on_device(opts):
            mode = "require"
    except DataError as exc:
        return [Problem("error", str(exc))]
    path = cache_path(spec, root, opts)
    if mode == "off" or unsupported(opts):
        return []
    cache = _open(path)
    if cache is None:
        if mode == "require":
            return [Problem("error", f"no decoded cache at {path}: run `mmbench data cache {spec.name} --root {root}`")]
        return []
    splits = spec.split_rows(index, cfg)
    missing = index.missing or {}
    rows = [r for rs in splits.values() for r in rs if r.index not in missing]
    stale = cache.stale_reason(spec, opts, index, rows)
    if stale:
        return [Problem("error", f"the decoded cache at {path} is stale ({stale}): rebuild it with "
                        f"`mmbench data cache {spec.name} --root {root}`, delete it, or set data.cache.mode=off")]
    return [Problem("warn", f"using the decoded cache at {path} ({len(cache.position)} clips; train crops are "
                    "drawn on the resized frames)")]


class CachedAVDataset(BuiltDataset):
    """Items read from the decoded cache; same keys, shapes and sampling as ``AVDataset``."""

    main_process_on_cpu = True  # trainer.loader_workers: 0 workers on CPU (memory-map reads are cheap)
    builds_batches = True  # get_batch: the harness asks for whole batches

    def __init__(self, cache: DecodedCache, rows, opts: dict, train: bool):
        self.cache = cache
        self.rows = rows
        self.labels = [r.label for r in rows]
        self.pos = [cache.position[r.index] for r in rows]
        self.frames = int(opts["frames"])
        self.sampling = opts.get("frame_sampling", "segment")
        self.train = train
        self.transform = frame_ops.uint8_transform(int(opts["image_size"]), train)
        self.device_transform = BatchAugment(int(opts["image_size"]), train) if augment_on_device(opts) else None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        audio, frames, offsets = self.cache.arrays()
        p = self.pos[i]
        a = torch.from_numpy(np.array(audio[p])).float()  # copy the float16 rows, convert in torch (fast)
        start, stop = int(offsets[p]), int(offsets[p + 1])
        idx = frame_ops.sample_indices(stop - start, self.frames, self.sampling, self.train)
        clip = torch.from_numpy(np.ascontiguousarray(frames[[start + j for j in idx]]))
        video = torch.stack([self.transform(f) for f in clip]).permute(1, 0, 2, 3).contiguous()
        r = self.rows[i]
        return {"audio": a, "video": video, "label": r.label, "index": r.index}

    def subset(self, positions) -> CachedAVDataset:
        """The items at ``positions`` (the trainer's held-out carve), still with ``get_batch``."""
        sub = CachedAVDataset.__new__(CachedAVDataset)
        sub.__dict__.update(self.__dict__)
        sub.rows = [self.rows[i] for i in positions]
        sub.labels = [r.label for r in sub.rows]
        sub.pos = [self.pos[i] for i in positions]
        sub.indices = [int(i) for i in positions]  # as torch.utils.data.Subset: the record's split digest
        return sub

    def get_batch(self, indices) -> dict:
        """The batch of items ``indices``, equal to ``default_collate([self[i] for i in indices])``
        (train: under the same RNG state, as the items draw in the same order), built without
        stacking item by item: each float16 spectrogram row is converted straight from the memory
        map into the float32 batch tensor, and each item's frames are sampled and cropped as in
        ``__getitem__`` into the batch tensor, then normalised at once (elementwise, so the same
        bits as frame by frame). In a DataLoader worker the batch is allocated in shared memory,
        as ``default_collate`` does, so it is not copied again on its way to the main process."""
        if self.device_transform is not None:
            return self.raw_batch(indices)
        audio, frames, offsets = self.cache.arrays()
        indices = [int(i) for i in indices]
        pos = [self.pos[i] for i in indices]
        n, size = len(indices), frames.shape[-1]
        a = batch_tensor((n,) + tuple(audio.shape[1:]), torch.float32)
        video = batch_tensor((n, 3, self.frames, size, size), torch.float32)
        with warnings.catch_warnings():  # the memory map is read-only; it is only read from
            warnings.simplefilter("ignore", UserWarning)
            for b, p in enumerate(pos):
                a[b].copy_(torch.from_numpy(audio[p]))
        for b, p in enumerate(pos):
            start, stop = int(offsets[p]), int(offsets[p + 1])
            idx = frame_ops.sample_indices(stop - start, self.frames, self.sampling, self.train)
            clip = torch.from_numpy(np.ascontiguousarray(frames[[start + j for j in idx]]))
            if self.train:
                for t, f in enumerate(clip):
                    video[b, :, t].copy_(self.transform.geometric(f))
            else:
                video[b].copy_(clip.permute(1, 0, 2, 3))
        frame_ops.normalize_(video, dim=1)
        return {"audio": a, "video": video, **label_tensors([self.rows[i] for i in indices])}


    def raw_batch(self, indices) -> dict:
        """The batch as stored, for ``device_transform``: ``audio`` float16 ``(B, 1, F, T)``, ``video``
        uint8 ``(B, T, 3, S, S)`` (frames sampled as in ``__getitem__``, not cropped)."""
        audio, frames, offsets = self.cache.arrays()
        indices = [int(i) for i in indices]
        pos = [self.pos[i] for i in indices]
        n, size = len(indices), frames.shape[-1]
        a = batch_tensor((n,) + tuple(audio.shape[1:]), torch.float16)
        video = batch_tensor((n, self.frames, 3, size, size), torch.uint8)
        with warnings.catch_warnings():  # the memory map is read-only; it is only read from
            warnings.simplefilter("ignore", UserWarning)
            for b, p in enumerate(pos):
                a[b].copy_(torch.from_numpy(audio[p]))
                start, stop = int(offsets[p]), int(offsets[p + 1])
                idx = frame_ops.sample_indices(stop - start, self.frames, self.sampling, self.train)
                for t, j in enumerate(idx):
                    video[b, t].copy_(torch.from_numpy(frames[start + j]))
        return {"audio": a, "video": video, **label_tensors([self.rows[i] for i in indices])}



class _Decode(Dataset):
    def __init__(self, rows, opts):
        self.rows, self.opts = rows, opts

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        r = self.rows[i]
        a = audio_ops.load_audio(r.audio, self.opts["audio"], self.opts.get("fbank"), train=False)
        size = int(self.opts["image_size"])
        files = cached_frames(frame_ops.list_frames(r.frames), self.opts)
        f = torch.stack([frame_ops.resized_uint8(p, size) for p in files])
        return i, a.to(torch.float16).numpy(), f.numpy()


def _refuse_foreign(path: Path, dataset: str, force: bool) -> None:
    """Never delete a folder at the cache's path that is not an mmbench cache of ``dataset``."""
    try:
        ours = json.loads((path / META).read_text()).get("dataset") == dataset
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours and not force:
        raise DataError(f"{path} exists and is not an mmbench cache of {dataset}; it is left as it is: move it "
                        "away, set data.cache.dir to another folder, or pass --force to replace it")


def build_cache(spec, root: Path, cfg, workers: int = 0, echo=print, force: bool = False,
                replace_foreign: bool = False) -> Path:
    """Decode every present clip of the index into the cache; an up-to-date cache is kept unless
    ``force``, a stale one is rebuilt. A folder at the cache's path that is not an mmbench cache
    of the dataset is refused unless ``replace_foreign`` (``mmbench data cache --force``)."""
    from numpy.lib.format import open_memmap

    root = Path(root)
    opts = spec.options(cfg)
    why = unsupported(opts)
    if why:
        raise DataError(f"cannot cache {spec.name} with preset {cfg.preset!r}: {why}")
    index = spec.load_index(root, cfg)
    missing = spec.scan_missing(index, refresh=True)
    rows = [r for r in index.rows if r.label >= 0 and r.index not in missing]
    path = cache_path(spec, root, opts)
    if path.exists():
        _refuse_foreign(path, spec.name, replace_foreign)
    existing = _open(path)
    if existing is not None and not force and existing.stale_reason(spec, opts, index, rows) is None:
        echo(f"{path} is up to date ({len(rows)} clips)")
        return path
    if not rows:
        raise DataError(f"no present clips to cache under {root}: run `mmbench data check {spec.name}`")
    t0 = time.time()
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    counts = np.array([len(cached_frames(frame_ops.list_frames(r.frames), opts)) for r in rows], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    size = int(opts["image_size"])
    a_shape = audio_ops.item_shape(opts["audio"], opts.get("fbank"))
    n_bytes = len(rows) * int(np.prod(a_shape)) * 2 + int(offsets[-1]) * 3 * size * size
    echo(f"caching {len(rows)} clips and {int(offsets[-1])} frames ({n_bytes / 2**30:.2f} GiB) in {path}")
    audio_mm = open_memmap(tmp / "audio.npy", mode="w+", dtype=np.float16, shape=(len(rows),) + a_shape)
    frames_mm = open_memmap(tmp / "frames.npy", mode="w+", dtype=np.uint8, shape=(int(offsets[-1]), 3, size, size))
    np.save(tmp / "offsets.npy", offsets)
    loader = DataLoader(_Decode(rows, opts), batch_size=None, num_workers=workers)
    for n, (i, a, f) in enumerate(loader, 1):
        audio_mm[i] = a
        frames_mm[offsets[i] : offsets[i + 1]] = f
        if n % 500 == 0:
            echo(f"  {n}/{len(rows)} clips decoded")
    audio_mm.flush()
    frames_mm.flush()
    del audio_mm, frames_mm
    meta = {
        "dataset": spec.name,
        "version": CACHE_VERSION,
        "key": cache_key(spec, opts),
        "options": decoded_options(spec, opts),
        "preset": cfg.preset,
        "index_digest": index_digest(index),
        "indices": [r.index for r in rows],
        "ids": [r.id for r in rows],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (tmp / META).write_text(json.dumps(meta))
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    echo(f"wrote {path}: {len(rows)} clips, {int(offsets[-1])} frames in {time.time() - t0:.1f} s")
    return path
