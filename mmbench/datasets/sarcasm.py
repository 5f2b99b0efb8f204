"""Sarcasm (``sarcasm``): multimodal sarcasm detection on tweets, Cai et al. 2019 (HFM release).

Layouts::

    hfm       <root>/text/{train.txt,valid2.txt,test2.txt}   <root>/images/<id>.jpg (or dataset_image/)
    njustkmg  <root>/annotations/{train,test}.tsv  (columns Label, String, ImageID)   <root>/images/
    bss       <root>/annotations/{train,test}_data.json   <root>/images/<basename of "image">

HFM lines are Python list literals (``ast.literal_eval``): train ``[id, text, label]``, valid2 and
test2 ``[id, text, hashtag_label, human_label]`` with the label last (``text/Readme.MD``). The HFM
keyword filter of ``codes/loadData.py`` drops lines whose whitespace tokens name the task. Only
the HFM layout has a validation file; the others carve val from train (§1.3).
"""

from __future__ import annotations

import ast
import csv
import json
import shutil
from pathlib import Path

import numpy as np

from mmbench.datasets import _checks as chk
from mmbench.datasets import image_text as it
from mmbench.datasets.base import DatasetSpec, Problem, stratified_carve
from mmbench.datasets.registry import register_dataset
from mmbench.results.errors import DataError

CLASSES = ("not_sarcastic", "sarcastic")
HFM_FILES = {"train": "train.txt", "val": "valid2.txt", "test": "test2.txt"}
NJUST_FILES = {"train": "train.tsv", "test": "test.tsv"}
BSS_FILES = {"train": "train_data.json", "test": "test_data.json"}
PUBLISHED = {"train": (11174, 8642), "val": (1451, 959), "test": (1450, 959)}
HFM_TRAIN_LINES = 29040
FILTER_WORDS = frozenset(
    ("sarcasm", "sarcastic", "reposting", "<url>", "joke", "jokes", "humor", "humour", "irony", "ironic", "exgag")
)
MEAN = (0.48456249428840364, 0.4988762843596956, 0.530657871261656)  # TPAMI-AMSS AMSS_IT/MyHelper.py
STD = (0.24398715912049204, 0.24868027118814742, 0.2573621194247526)


def hfm_filtered(text: str) -> bool:
    """True if the HFM filter (codes/loadData.py) drops this text."""
    return any(w in FILTER_WORDS for w in text.split())


def parse_label(value) -> int:
    v = int(str(value).strip())
    if v not in (0, 1):
        raise ValueError(f"unknown label {value!r} (expected 0 or 1)")
    return v


def _with_jpg(name: str) -> str:
    name = name.strip()
    return name if Path(name).suffix else name + ".jpg"


class SarcasmSpec(DatasetSpec):
    name = "sarcasm"
    split_index = "per_split"  # each split file numbers its own lines
    modalities = ("text", "image")
    num_classes = 2
    class_names = CLASSES

    def layouts(self):
        return ("hfm", "njustkmg", "bss")

    def presets(self):
        paper = {"text": it.text_options(128), "image": it.image_options(224, MEAN, STD)}
        smoke = {"text": it.text_options(16, it.TINY, it.TINY),
                 "image": it.image_options(32, MEAN, STD, "none", (1, 1, 1, 1))}
        return {"paper": paper, "smoke": smoke}

    # ------------------------------------------------------------------ layout
    def detect_layout(self, root: Path) -> str | None:
        if (root / "text" / HFM_FILES["train"]).is_file():
            return "hfm"
        if (root / "annotations" / NJUST_FILES["train"]).is_file():
            return "njustkmg"
        if (root / "annotations" / BSS_FILES["train"]).is_file():
            return "bss"
        return None

    def _no_layout(self, root: Path) -> str:
        return (f"{root} matches no sarcasm layout: expected hfm {root}/text/train.txt, njustkmg "
                f"{root}/annotations/train.tsv or bss {root}/annotations/train_data.json (images in {root}/images/)")

    def index_files(self, root: Path, layout: str) -> dict[str, Path]:
        if layout == "hfm":
            return {s: root / "text" / f for s, f in HFM_FILES.items()}
        files = NJUST_FILES if layout == "njustkmg" else BSS_FILES
        return {s: root / "annotations" / f for s, f in files.items()}

    def image_dir(self, root: Path) -> Path:
        if not (root / "images").is_dir() and (root / "dataset_image").is_dir():
            return root / "dataset_image"
        return root / "images"

    # ------------------------------------------------------------------ index
    def read_index(self, path: Path, layout: str, root: Path) -> tuple[list[dict], list[str], int]:
        """(rows, errors, filtered): rows ``{"index", "id", "label", "image", "text", "line"}``."""
        images = self.image_dir(root)
        rows, errors, filtered = [], [], 0
        if layout == "bss":
            try:
                records = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                return [], [f"{path}:1: not JSON ({exc})"], 0
            if not isinstance(records, list):
                return [], [f"{path}:1: top level is {type(records).__name__}, expected a list of records"], 0
            for n, rec in enumerate(records):
                try:
                    rows.append({"index": n, "id": Path(rec["image"]).stem, "label": parse_label(rec["label"]),
                                 "image": images / Path(rec["image"]).name, "text": str(rec["text"]),
                                 "line": n + 1})
                except (KeyError, TypeError, ValueError) as exc:
                    errors.append(f"{path}: record {n}: {type(exc).__name__} {exc}: {str(rec)[:80]!r}")
            return rows, errors, 0
        with open(path, encoding="utf-8-sig", newline="") as fh:
            lines = fh.read().splitlines()
        if layout == "njustkmg":
            reader = list(csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))
            header = [h.strip() for h in reader[0]] if reader else []
            for name in ("Label", "String", "ImageID"):
                if name not in header:
                    return [], [f"{path}:1: no {name!r} column in header {header!r}"], 0
            c = {k: header.index(k) for k in ("Label", "String", "ImageID")}
            for n, fields in enumerate(reader[1:], start=2):
                if not any(f.strip() for f in fields):
                    continue
                try:
                    image = _with_jpg(fields[c["ImageID"]])
                    rows.append({"index": n - 2, "id": Path(image).stem, "label": parse_label(fields[c["Label"]]),
                                 "image": images / image, "text": fields[c["String"]], "line": n})
                except (IndexError, ValueError) as exc:
                    errors.append(f"{path}:{n}: {exc}: {lines[n - 1][:80]!r}")
            return rows, errors, 0
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rec = ast.literal_eval(line)
                if not isinstance(rec, (list, tuple)) or len(rec) not in (3, 4):
                    raise ValueError("expected [id, text, label] or [id, text, hashtag_label, label]")
                rid, text, label = str(rec[0]), str(rec[1]), parse_label(rec[-1])
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
                errors.append(f"{path}:{n}: {type(exc).__name__}: {line[:80]!r}")
                continue
            if hfm_filtered(text):
                filtered += 1
                continue
            rows.append({"index": n - 1, "id": rid, "label": label, "image": images / f"{rid}.jpg", "text": text,
                         "line": n})
        return rows, errors, filtered

    def _layout_or_raise(self, root: Path) -> str:
        layout = self.detect_layout(root)
        if layout is None:
            raise DataError(self._no_layout(root))
        return layout

    def _read(self, root: Path, which: str) -> list[dict]:
        layout = self._layout_or_raise(root)
        path = self.index_files(root, layout)[which]
        if not path.is_file():
            raise DataError(f"{path} is missing: the {layout} layout needs it")
        rows, errors, _ = self.read_index(path, layout, root)
        if errors:
            raise DataError(f"cannot parse {errors[0]}" + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""))
        return rows

    def split_rows(self, root: Path, cfg) -> dict[str, list[dict]]:
        root = Path(root)
        layout = self._layout_or_raise(root)
        train = self._read(root, "train")
        out = {"test": self._read(root, "test")}
        if layout == "hfm":
            out["train"], out["val"] = train, self._read(root, "val")
        else:
            kept, carved = stratified_carve([r["label"] for r in train], cfg.val_fraction, cfg.split_seed)
            out["train"], out["val"] = [train[i] for i in kept], [train[i] for i in carved]
        return out

    def splits(self, root, cfg):
        return {s: [r["index"] for r in rows] for s, rows in self.split_rows(root, cfg).items()}

    def build(self, split, root, train, cfg):
        rows = self.split_rows(root, cfg)[split]
        return it.build_dataset(rows, list(range(len(rows))), cfg.options, "keep", drop=cfg.drop_missing)

    def backbones(self, cfg):
        return it.backbones(cfg.options)

    # ------------------------------------------------------------------ check
    def check(self, root, cfg):
        deep, strict = chk.check_flags(cfg)
        root, layout, problems = chk.root_layout(root, self.detect_layout, self._no_layout)
        if problems:
            return problems
        if layout != "hfm":
            problems.append(Problem("warn", f"the {layout} layout has no validation file: val is carved from "
                                            "train, so the published val split (HFM valid2.txt) is unused"))
        ids: dict[str, dict[str, str]] = {}
        for split, path in self.index_files(root, layout).items():
            if not path.is_file():
                problems.append(Problem("error", f"{path} is missing: the {layout} layout needs it"))
                continue
            rows, errors, filtered = self.read_index(path, layout, root)
            problems += [Problem("error", f"unparseable index line {e}") for e in errors]
            ids[split], dup_problems = chk.duplicate_rows(rows, path, "id", "ids", prefix="id ")
            problems += dup_problems
            if layout == "hfm" or split == "test":
                counts = tuple(np.bincount([r["label"] for r in rows], minlength=2).tolist())
                problems += chk.count_mismatch(f"{path}: rows per class (0/1)", counts, PUBLISHED[split], strict)
            if layout == "hfm" and split == "train":
                problems += chk.count_mismatch(f"{path}: lines (before the HFM filter dropped {filtered})",
                                               len(rows) + filtered + len(errors), HFM_TRAIN_LINES, strict)
            images = [r["image"] for r in rows]
            problems += chk.missing(f"images named by {path}", [p for p in images if not p.is_file()],
                                    f"copy them into {self.image_dir(root)}", chk.dropping(cfg))
            problems += chk.unreadable_images(images, deep, "image")
        problems += chk.in_train_and_test(ids, "ids")
        problems += it.check_weights(cfg.options) if cfg is not None and cfg.options else []
        return problems

    # ------------------------------------------------------------------ fixture
    def write_fixture(self, root, layout=None, n_per_class=2, seed=0):
        """HFM list literals (3-element train lines, 4-element valid/test lines, plus train lines
        holding filtered keywords: one per class), the njustkmg tsvs or the BSS JSON."""
        layout = layout or "hfm"
        if layout not in self.layouts():
            raise DataError(f"unknown sarcasm layout {layout!r}; choose {', '.join(self.layouts())}")
        root = Path(root)
        rng = np.random.default_rng(seed)
        files = self.index_files(root, layout)
        next_id = 682716753374351360
        for split, path in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            records = []
            # a carved val (njustkmg, bss) needs 5 train rows per class for one val row
            n = max(n_per_class, 5) if split == "train" and layout != "hfm" else n_per_class
            for c in range(2):
                for _ in range(n):
                    next_id += 1
                    it.write_jpg(root / "images" / f"{next_id}.jpg", rng)
                    text = f"<user> {it.fixture_sentence(rng)} emoji_{int(rng.integers(1, 99))} <num>"
                    records.append((str(next_id), text, c))
            if layout == "hfm":
                lines = []
                for rid, text, c in records:
                    lines.append(repr([rid, text, c]) if split == "train" else repr([rid, text, 1 - c, c]))
                if split == "train":
                    for c, word in enumerate(("sarcasm", "<url>")):
                        next_id += 1  # filtered: never loaded, so no image is needed
                        lines.append(repr([str(next_id), f"so {word} today", c]))
                path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            elif layout == "njustkmg":
                lines = ["Label\tString\tImageID"] + [f"{c}\t{text}\t{rid}" for rid, text, c in records]
                path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            else:
                data = [{"image": f"dataset_image/{rid}.jpg", "text": text, "label": c} for rid, text, c in records]
                path.write_text(json.dumps(data), encoding="utf-8")
        return root

    def write_raw_fixture(self, root, n_per_class=2, seed=0):
        raw_sarcasm(Path(root), n_per_class, seed)

    def prepare(self, raw, out, jobs, progress, **options):
        from mmbench.datasets.prepare.image_text import prepare_sarcasm

        return prepare_sarcasm(raw, out, jobs, progress, **options)


# --------------------------------------------------------------------------- fixtures

def raw_sarcasm(root: Path, n_per_class: int, seed: int) -> None:
    """The HFM release's shape: ``text/{train,valid2,test2}.txt`` and ``dataset_image/<id>.jpg``."""
    from mmbench.datasets.registry import DATASETS

    tmp = root / "_hfm"
    DATASETS.get("sarcasm").write_fixture(tmp, "hfm", n_per_class, seed)
    shutil.move(str(tmp / "text"), root / "text")
    images = tmp / "images" if (tmp / "images").is_dir() else tmp / "dataset_image"
    shutil.move(str(images), root / "dataset_image")
    shutil.rmtree(tmp)


register_dataset(SarcasmSpec())
