"""What CREMA-D, Kinetics-Sounds and VGGSound share: index rows,
class lists, splits, missing samples, items, backbones and ``check()``.

A dataset module subclasses ``AVSpec`` and says only what differs: its layouts and their marker
files, how an index line parses, where a row's wav and frame folder live, and the published counts.

``index`` of an item is the row's position over the layout's index files read in the order
train, [val], test (one file: its row number), so it stays stable when other clips are missing;
the decoded cache (``cache.py``) is keyed by it.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mmbench.backbones.resnet18 import AudioResNet18, FrameResNet18
from mmbench.datasets import audio as audio_ops
from mmbench.datasets import frames as frame_ops
from mmbench.datasets.base import BuiltDataset, DatasetSpec, Problem, stratified_carve
from mmbench.datasets.batch_memory import batch_tensor, label_tensors
from mmbench.results.errors import DataError

SPLITS = ("train", "val", "test")
MAX_LISTED = 10
HEADER_WORDS = {"id", "name", "file", "filename", "path", "youtube_id", "video", "video_id", "clip", "sample",
                "label", "labels", "class", "emotion", "category"}


@dataclass(frozen=True)
class Row:
    """One line of an index file, resolved to its media."""

    index: int
    id: str
    split: str
    label: int  # -1: unknown label
    label_name: str
    where: str  # "file:line" for messages
    audio: Path
    frames: Path


@dataclass
class Index:
    layout: str
    rows: list[Row]
    classes: tuple[str, ...]
    class_note: str
    files: dict[str, Path]
    has_val: bool
    problems: list[Problem] = field(default_factory=list)
    missing: dict[int, str] | None = None  # row index -> reason, filled by scan_missing


def read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty lines with their 1-based numbers; UTF-8 BOM and CRLF accepted."""
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    return [(i + 1, line.strip()) for i, line in enumerate(text.splitlines()) if line.strip()]


def split_fields(line: str) -> list[str]:
    """A comma-separated line (quotes honoured), else whitespace-separated fields."""
    if "," in line:
        return [f.strip() for f in next(csv.reader(io.StringIO(line)))]
    return line.split()


def looks_like_header(fields: list[str]) -> bool:
    return any(f.strip().lower().lstrip("#").strip() in HEADER_WORDS for f in fields)


def strip_media_suffixes(sid: str, suffixes: tuple[str, ...]) -> str:
    """``sid`` without the media suffixes that index lines may carry (``<id>.flv``), case-blind,
    tried in the order of ``suffixes`` (each stripped at most once)."""
    for suffix in suffixes:
        if sid.lower().endswith(suffix):
            sid = sid[: -len(suffix)]
    return sid


def fingerprint(ids) -> str:
    """sha256 of ``"\\n".join(sorted(ids))`` (the published-split fingerprints of ``cremad`` and ``kinetics_sounds``)."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def _stat_sig(paths) -> tuple:
    sig = []
    for p in paths:
        try:
            st = os.stat(p)
            sig.append((str(p), st.st_mtime_ns, st.st_size))
        except OSError:
            sig.append((str(p), None, None))
    return tuple(sig)


def precomputed_file(folder: Path, sid: str) -> Path:
    """``<folder>/<sid>.pkl``, ``.npy`` or ``.pt``, whichever exists (``.pkl`` when none does)."""
    for suffix in (".pkl", ".npy", ".pt"):
        if (folder / f"{sid}{suffix}").is_file():
            return folder / f"{sid}{suffix}"
    return folder / f"{sid}.pkl"


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mmbench"


class AVSpec(DatasetSpec):
    """Base of the audio-visual datasets; subclasses fill the hooks marked below."""

    modalities = ("audio", "video")
    min_frames = 1
    fixed_classes: bool = True  # False: classes.txt or derived (§1.3)
    # part of every run's identity (identity.component_info): 2 = frames decoded by decode_jpeg and
    # cropped on tensors (frames.resize_uint8, within one grey level of version 1's PIL path)
    version = "2"

    def __init__(self):
        self._memo: dict = {}

    # ------------------------------------------------------------------ hooks
    def markers(self) -> dict[str, tuple[str, ...]]:
        """Layout name -> files that identify it (all must exist), in detection order."""
        raise NotImplementedError

    def index_files(self, root: Path, layout: str) -> dict[str, Path]:
        """Split -> index file (val only when the layout has one on disk)."""
        raise NotImplementedError

    def parse_index(self, path: Path, split: str, layout: str) -> tuple[list[tuple[str, str, str, str]], list[Problem]]:
        """Entries ``(split, id, label_token, where)`` of one index file, and parse errors."""
        raise NotImplementedError

    def media(self, root: Path, layout: str, split: str, sid: str, opts: dict) -> tuple[Path, Path]:
        """(wav or precomputed spectrogram path, frame folder) of one clip."""
        raise NotImplementedError

    def published_checks(self, index: Index) -> list[Problem]:
        return []

    # ------------------------------------------------------------------ options
    def options(self, cfg) -> dict:
        opts = getattr(cfg, "options", None) or {}
        if not opts:
            opts = copy.deepcopy(self.presets()[getattr(cfg, "preset", "paper") or "paper"])
        return opts

    def concrete_options(self, root, cfg) -> dict:
        """The options a run at ``root`` trains with: ``data.cache.mode=auto`` decided
        (``cache.concrete_mode``), so the run's identity names its data path."""
        from mmbench.datasets import cache as cache_mod

        opts = copy.deepcopy(self.options(cfg))
        if "cache" in opts:
            opts["cache"]["mode"] = cache_mod.concrete_mode(self, Path(root), cfg)
        return opts

    def drop_missing(self, cfg) -> bool:
        value = getattr(cfg, "drop_missing", None)
        return self.drop_missing_default if value is None else bool(value)

    def path_option(self, root: Path, value: str, default: str) -> Path:
        if value:
            p = Path(value).expanduser()
            return p if p.is_absolute() else root / p
        return root / default

    # ------------------------------------------------------------------ layout and index
    def detect_layout(self, root: Path, opts: dict) -> str | None:
        chosen = opts.get("layout", "auto")
        marks = self.markers()
        if chosen != "auto":
            if chosen not in marks:
                raise DataError(f"{self.name}: unknown data.layout {chosen!r}; choose auto, {', '.join(marks)}")
            return chosen
        for name, files in marks.items():
            if all((root / f).exists() for f in files):
                return name
        return None

    def layout_error(self, root: Path) -> Problem:
        listed = "; ".join(f"{name}: {', '.join(files)}" for name, files in self.markers().items())
        return Problem("error", f"{root} matches no {self.name} layout; expected the files of one of: {listed}")

    def load_index(self, root: Path, cfg) -> Index:
        """Parse the index files (memoised on their stat signature and the path options)."""
        opts = self.options(cfg)
        layout = self.detect_layout(root, opts)
        if layout is None:
            raise DataError(self.layout_error(root).message)
        files = self.index_files(root, layout)
        extra = [root / "classes.txt"]
        key = (str(root), layout, repr(opts.get("paths")), opts.get("audio_source", "wav"),
               _stat_sig(list(files.values()) + extra))
        if key in self._memo:
            return self._memo[key]
        problems: list[Problem] = []
        entries = []
        first_split = {}
        for split in SPLITS:
            if split in files:
                first_split.setdefault(files[split], split)  # one file may hold every split
        for path, split in first_split.items():
            if not path.is_file():
                problems.append(Problem("error", f"{path} is missing: the {layout} layout needs it"))
                continue
            got, errs = self.parse_index(path, split, layout)
            entries.extend(got)
            problems.extend(errs)
        classes, note, class_problems = self.class_list(root, entries)
        problems.extend(class_problems)
        rows = []
        for i, (split, sid, token, where) in enumerate(entries):
            label = self.resolve_label(token, classes)
            name = classes[label] if label >= 0 else token
            a, v = self.media(root, layout, split, sid, opts)
            rows.append(Row(i, sid, split, label, name, where, a, v))
        index = Index(layout, rows, classes, note, files, "val" in files and files["val"].is_file(), problems)
        self._memo = {key: index}
        return index

    # ------------------------------------------------------------------ classes
    def resolve_label(self, token: str, classes: tuple[str, ...]) -> int:
        t = token.strip()
        if t.lstrip("-").isdigit():
            k = int(t)
            return k if 0 <= k < self.num_classes and (k < len(classes) or not classes) else -1
        if t in classes:
            return classes.index(t)
        return -1

    def class_list(self, root: Path, entries) -> tuple[tuple[str, ...], str, list[Problem]]:
        """Fixed names, else ``<root>/classes.txt``, else derived from every index row (§1.3)."""
        if self.fixed_classes:
            return tuple(self.class_names), "fixed in code", []
        problems = []
        path = root / "classes.txt"
        if path.is_file():
            names = tuple(line for _, line in read_lines(path))
            if len(names) > self.num_classes:
                problems.append(Problem("error", f"{path} lists {len(names)} classes, {self.name} has {self.num_classes}"))
            elif len(names) != self.num_classes:
                problems.append(Problem("warn", f"{path} lists {len(names)} classes, the published "
                                        f"{self.name} has {self.num_classes}", "count"))
            return names, f"{path} (sha256 {hashlib.sha256(path.read_bytes()).hexdigest()[:16]})", problems
        tokens = [e[2].strip() for e in entries]
        if tokens and all(t.isdigit() for t in tokens):
            names = tuple(str(i) for i in range(self.num_classes))
            return names, "integer labels without classes.txt: named '0'..", problems
        names = tuple(sorted(set(tokens)))
        text = "".join(n + "\n" for n in names)
        digest = hashlib.sha256(text.encode()).hexdigest()
        target = path
        try:
            path.write_text(text)
        except OSError:
            target = user_cache_dir() / self.name / f"classes-{digest[:16]}.txt"
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
            except OSError:
                problems.append(Problem("error", f"no writable place for the derived class list ({path} and "
                                        f"{target}); write {path} yourself, one class name a line"))
        if len(names) != self.num_classes:
            problems.append(Problem("warn", f"{len(names)} label names in the index files, the published "
                                    f"{self.name} has {self.num_classes}; class indices follow sorted names", "count"))
        return names, f"derived from the index files, written to {target} (sha256 {digest[:16]})", problems

    # ------------------------------------------------------------------ missing samples and splits
    def missing_reason(self, row: Row) -> str | None:
        if not row.audio.is_file():
            return "audio"
        n = len(frame_ops.list_frames(row.frames))
        if n == 0 and not row.frames.is_dir():
            return "frames"
        if n < self.min_frames:
            return "few_frames"
        return None

    def scan_missing(self, index: Index, refresh: bool = False) -> dict[int, str]:
        if index.missing is None or refresh:
            out = {}
            for r in index.rows:
                reason = self.missing_reason(r)
                if reason:
                    out[r.index] = reason
            index.missing = out
        return index.missing

    def split_rows(self, index: Index, cfg) -> dict[str, list[Row]]:
        """Published splits, val carved from train when absent (§1.3: over the full index, before
        missing samples are dropped); rows with unknown labels are left out (check reports them)."""
        by = {s: [r for r in index.rows if r.split == s and r.label >= 0] for s in SPLITS}
        if not index.has_val:
            train = by["train"]
            kept, carved = stratified_carve([r.label for r in train], float(cfg.val_fraction), int(cfg.split_seed))
            by["val"] = [train[i] for i in carved]
            by["train"] = [train[i] for i in kept]
        return by

    def splits(self, root, cfg) -> dict[str, list[int]]:
        index = self.load_index(Path(root), cfg)
        by = self.split_rows(index, cfg)
        if self.drop_missing(cfg):
            missing = self.scan_missing(index)
            by = {s: [r for r in rows if r.index not in missing] for s, rows in by.items()}
        return {s: [r.index for r in rows] for s, rows in by.items()}

    # ------------------------------------------------------------------ items
    def build(self, split, root, train, cfg):
        from mmbench.datasets import cache as cache_mod

        root = Path(root)
        index = self.load_index(root, cfg)
        wanted = set(self.splits(root, cfg)[split])
        rows = [r for r in index.rows if r.index in wanted]
        if not rows:
            raise DataError(f"the {split} split of {self.name} at {root} is empty"
                            + (" (raise data.val_fraction)" if split == "val" else "")
                            + f": run `mmbench data check {self.name} --root {root}`")
        opts = self.options(cfg)
        decoded = cache_mod.lookup(self, root, cfg, index, rows)
        if decoded is not None:
            return cache_mod.CachedAVDataset(decoded, rows, opts, train)
        return AVDataset(rows, opts, train)

    def backbones(self, cfg):
        width = int(self.options(cfg).get("backbone", {}).get("width", 64))
        dim = 8 * width
        return {"audio": (lambda: AudioResNet18(width), dim), "video": (lambda: FrameResNet18(width), dim)}

    # ------------------------------------------------------------------ check
    def check(self, root, cfg) -> list[Problem]:
        """``mmbench data check``: layout, index, counts, media, readability, decoded cache."""
        if root is None or not Path(root).exists():
            return [Problem("error", f"data root {root} does not exist: pass --root DIR or set MMBENCH_DATA")]
        root = Path(root)
        opts = self.options(cfg)
        try:
            layout = self.detect_layout(root, opts)
        except DataError as exc:
            return [Problem("error", str(exc))]
        if layout is None:
            return [self.layout_error(root)]
        index = self.load_index(root, cfg)
        problems = list(index.problems)
        problems += self._check_labels(index)
        problems += self._check_ids(index)
        problems += self.published_checks(index)
        problems += self._check_media(index, cfg, opts)
        problems += self._check_readability(index, cfg, root)
        from mmbench.datasets import cache as cache_mod

        problems += cache_mod.check_cache(self, root, cfg, index)
        return problems

    def _check_labels(self, index: Index) -> list[Problem]:
        bad = [r for r in index.rows if r.label < 0]
        if not bad:
            return []
        shown = "; ".join(f"{r.where} {r.label_name!r}" for r in bad[:MAX_LISTED])
        return [Problem("error", f"{len(bad)} unknown labels ({shown}); valid: {', '.join(index.classes[:12])}"
                        + (" ..." if len(index.classes) > 12 else ""))]

    def _check_ids(self, index: Index) -> list[Problem]:
        out = []
        seen: dict[str, dict[str, str]] = {s: {} for s in SPLITS}
        for r in index.rows:
            if r.id in seen[r.split]:
                out.append(Problem("error", f"{r.where}: id {r.id} is listed twice in {r.split} "
                                   f"(first at {seen[r.split][r.id]}); remove one"))
            else:
                seen[r.split][r.id] = r.where
        both = sorted(set(seen["train"]) & set(seen["test"]))
        if both:
            out.append(Problem("error", f"{len(both)} ids are in both train and test (e.g. {', '.join(both[:5])}; "
                               f"{seen['test'][both[0]]}): fix the index files"))
        return out

    def count_problems(self, index: Index, expected_total: dict[str, int], per_class: dict[str, list[int]],
                       prints: dict[str, str], what: str) -> list[Problem]:
        """Listed vs published split sizes, class counts and fingerprints: warnings of kind
        ``count`` (``--strict`` makes them errors)."""
        out = []
        missing = self.scan_missing(index)
        for split, n in expected_total.items():
            rows = [r for r in index.rows if r.split == split]
            if not rows and split == "val":
                continue
            present = sum(r.index not in missing for r in rows)
            if len(rows) != n:
                out.append(Problem("warn", f"{index.files.get(split)}: {len(rows)} {split} rows listed "
                                   f"({present} present, {len(rows) - present} missing), {what} has {n}", "count"))
        for split, counts in per_class.items():
            labels = [r.label for r in index.rows if r.split == split and r.label >= 0]
            got = np.bincount(labels, minlength=len(counts)).tolist()[: len(counts)] if labels else [0] * len(counts)
            if labels and got != list(counts):
                out.append(Problem("warn", f"{index.files.get(split)}: {split} rows per class {got}, "
                                   f"{what} has {list(counts)}", "count"))
        for split, prefix in prints.items():
            ids = [r.id for r in index.rows if r.split == split]
            if ids and not fingerprint(ids).startswith(prefix):
                out.append(Problem("warn", f"{index.files.get(split)}: not {what} (fingerprint "
                                   f"{fingerprint(ids)[:16]}, expected {prefix})", "count"))
        return out

    def _check_media(self, index: Index, cfg, opts) -> list[Problem]:
        missing = self.scan_missing(index, refresh=True)
        drop = self.drop_missing(cfg)
        out = []
        labels = {"audio": "audio files", "frames": "frame folders", "few_frames":
                  f"frame folders with fewer than {self.min_frames} frames"}
        rows = {r.index: r for r in index.rows}
        for reason, text in labels.items():
            hit = [rows[i] for i, why in missing.items() if why == reason]
            if not hit:
                continue
            paths = [str(r.audio if reason == "audio" else r.frames) for r in hit]
            per_split = {s: sum(r.split == s for r in hit) for s in SPLITS if any(r.split == s for r in hit)}
            counts = ", ".join(f"{n} {s}" for s, n in per_split.items())
            listed = "; ".join(paths[:MAX_LISTED]) + (" ..." if len(paths) > MAX_LISTED else "")
            if drop:
                out.append(Problem("warn", f"{len(hit)} samples dropped for missing {text} ({counts}): {listed}"))
            else:
                out.append(Problem("error", f"{len(hit)} missing {text} ({counts}): {listed}; restore them, or "
                                   "skip those samples with data.drop_missing=true (mmbench data check --skip-missing)"))
        return out

    def _check_readability(self, index: Index, cfg, root: Path) -> list[Problem]:
        """Decode every wav (header and samples) and every frame (PIL ``verify()`` and a full load)
        when ``check_deep`` is set (``mmbench data check``, the default there), else a deterministic
        sample of 20 clips per split; in parallel, skipping files verified before
        (``media_check``: size + mtime memo)."""
        from mmbench.datasets import media_check

        deep = bool(getattr(cfg, "check_deep", False))
        missing = index.missing or {}
        items, where = [], {}
        for split in SPLITS:
            rows = [r for r in index.rows if r.split == split and r.index not in missing]
            if not deep and len(rows) > 20:
                rows = [rows[i] for i in np.linspace(0, len(rows) - 1, 20).round().astype(int)]
            for r in rows:
                if r.audio.suffix.lower() == ".wav":
                    items.append((r.audio, "wav"))
                    where[r.audio] = r.where
                for f in frame_ops.list_frames(r.frames):
                    items.append((f, "image"))
                    where[f] = r.where
        failed = media_check.verify(items, root)
        return [Problem("error", f"{why} ({where[p]}); replace or re-extract the file")
                for p, why in sorted(failed.items(), key=lambda kv: str(kv[0]))]


class AVDataset(BuiltDataset):
    """Items decoded from the files every time: ``{"audio": (1,F,T), "video": (3,T_v,S,S), "label",
    "index"}``. Random choices (frame draws, crops, the ``ogm`` VGGSound audio start) come from
    torch's RNG, which the harness seeds (per worker)."""

    builds_batches = True  # get_batch: the harness asks for whole batches

    def __init__(self, rows: list[Row], opts: dict, train: bool):
        self.rows = rows
        self.labels = [r.label for r in rows]
        self.opts = opts
        self.train = train
        self.run_seed = torch.initial_seed()  # build() runs after the harness seeded the run
        import scipy.signal  # noqa: F401 - the decoders' imports, here: forked loader workers
        import torchvision.transforms  # noqa: F401 - inherit them instead of importing every epoch

    def __len__(self) -> int:
        return len(self.rows)

    def audio(self, r: Row, out: torch.Tensor | None = None) -> torch.Tensor:
        """The ``(1, F, T)`` spectrogram item of row ``r`` (written into ``out`` when given)."""
        a = self.opts["audio"]
        if self.opts.get("audio_source", "wav") == "precomputed":
            item = audio_ops.load_precomputed(r.audio)
            return item if out is None else out.copy_(item)
        rng = None
        if not audio_ops.is_deterministic(a):
            if self.train:
                rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,))))
            else:  # seeded per sample from (run seed, index): repeated evaluations agree
                rng = np.random.default_rng([self.run_seed % 2**63, r.index])
        return audio_ops.load_audio(r.audio, a, self.opts.get("fbank"), self.train, rng, out)

    def video(self, r: Row, out: torch.Tensor | None = None) -> torch.Tensor:
        """The ``(3, T, S, S)`` clip of row ``r`` (written into ``out`` when given)."""
        files = frame_ops.list_frames(r.frames)
        if not files:
            raise DataError(f"{r.frames}: no frames ({r.where}); run `mmbench data check`")
        return frame_ops.load_clip(files, int(self.opts["frames"]), int(self.opts["image_size"]),
                                   self.opts.get("frame_sampling", "segment"), self.train, out)

    def __getitem__(self, i: int) -> dict:
        r = self.rows[i]
        return {"audio": self.audio(r), "video": self.video(r), "label": r.label, "index": r.index}

    def get_batch(self, indices) -> dict:
        """``default_collate([self[i] for i in indices])``, bit for bit: the same items in the same
        order (so the same random draws), each decoded straight into its slot of the batch tensors
        instead of into per-item tensors that are then stacked; inside a DataLoader worker the
        batch is allocated in shared memory, as ``default_collate`` does (``batch_memory``)."""
        rows = [self.rows[int(i)] for i in indices]
        t, size = int(self.opts["frames"]), int(self.opts["image_size"])
        video = batch_tensor((len(rows), 3, t, size, size), torch.float32)
        audio = None
        for b, r in enumerate(rows):
            if audio is None:
                item = self.audio(r)  # the first item gives the shape (precomputed files carry theirs)
                audio = batch_tensor((len(rows),) + tuple(item.shape), torch.float32)
                audio[0].copy_(item)
            else:
                self.audio(r, out=audio[b])
            self.video(r, out=video[b])
        return {"audio": audio, "video": video, **label_tensors(rows)}

    def subset(self, positions) -> AVDataset:
        """The items at ``positions`` (the trainer's held-out carve), still with ``get_batch``;
        ``indices`` are the positions, as ``torch.utils.data.Subset`` records them."""
        sub = type(self).__new__(type(self))
        sub.__dict__.update(self.__dict__)
        sub.rows = [self.rows[i] for i in positions]
        sub.labels = [r.label for r in sub.rows]
        sub.indices = [int(i) for i in positions]
        return sub


def av_presets(paper_audio: dict, frames: int, image_size: int, extra: dict[str, dict] | None = None,
               smoke_frames: int = 1) -> dict[str, dict]:
    """The presets every audio-visual dataset has: ``paper``, ``fbank`` and ``smoke`` (plus extra)."""
    base = {
        "layout": "auto",
        "audio_source": "wav",
        "audio": dict(paper_audio),
        "frames": frames,
        "image_size": image_size,
        "frame_sampling": "segment",
        "backbone": {"width": 64},
        "cache": {"mode": "auto", "dir": "", "max_frames": 0, "augment": "loader"},
    }
    fbank = copy.deepcopy(base)
    fbank["audio"] = {"features": "fbank", "sample_rate": 16000, "repeat": "none", "start": "first"}
    fbank["fbank"] = {"normalize": True, "frames": 1024, "mel_bins": 128}
    smoke = copy.deepcopy(base)
    smoke["audio"] = {"features": "stft", "sample_rate": 8000, "repeat": "tile", "tile": 1, "seconds": 0.5,
                      "start": "first", "n_fft": 64, "hop": 32}
    smoke["frames"] = smoke_frames
    smoke["image_size"] = 32
    smoke["backbone"] = {"width": 4}
    out = {"paper": base, "fbank": fbank, "smoke": smoke}
    for name, preset in (extra or {}).items():
        p = copy.deepcopy(base)
        for k, v in preset.items():
            p[k] = v
        out[name] = p
    return out
