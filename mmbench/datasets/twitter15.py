"""Twitter-15 (``twitter15``): multimodal aspect-level sentiment, TomBERT release.

Layouts::

    tombert   <root>/{train,dev,test}.tsv               <root>/twitter2015_images/<ImageID>
    njustkmg  <root>/annotations/{train,dev,test}.tsv   <root>/twitter2015_images/<ImageID>

TomBERT files are parsed by position (index, label, image id, tweet with ``$T$``, aspect): the
test header names only 4 of its 5 columns. njustkmg files by the column names ``Label``,
``ImageID``, ``String``. Both are UTF-8, tab-separated, quoting off. dev is the validation split.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np

from mmbench.datasets import _checks as chk
from mmbench.datasets import image_text as it
from mmbench.datasets.base import DatasetSpec, Problem
from mmbench.datasets.registry import register_dataset
from mmbench.results.errors import DataError

CLASSES = ("negative", "neutral", "positive")
SPLIT_FILES = {"train": "train.tsv", "val": "dev.tsv", "test": "test.tsv"}
PUBLISHED = {"train": (368, 1883, 928), "val": (149, 670, 303), "test": (113, 607, 317)}
IMAGE_DIR = "twitter2015_images"
MEAN = (0.42455, 0.44051, 0.47076)  # TPAMI-AMSS AMSS_IT/MyHelper.py
STD = (0.24485, 0.24617, 0.25451)
TOMBERT_HEADER = ("index", "#1 Label", "#2 ImageID", "#3 String", "#3 String")
TOMBERT_TEST_HEADER = ("index", "#1 ImageID", "#2 String", "#2 String")


def parse_label(text: str) -> int:
    t = text.strip().lower()
    if t in CLASSES:
        return CLASSES.index(t)
    if t.lstrip("-").isdigit() and 0 <= int(t) < len(CLASSES):
        return int(t)
    raise ValueError(f"unknown label {text!r} (expected 0/1/2 or {'/'.join(CLASSES)})")


def image_path(root: Path, image_id: str) -> Path:
    image_id = image_id.strip()
    if not Path(image_id).suffix:
        image_id += ".jpg"
    return root / IMAGE_DIR / image_id


def _lines(path: Path):
    with open(path, encoding="utf-8-sig", newline="") as fh:
        yield from csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)


def read_index(path: Path, layout: str, root: Path) -> tuple[list[dict], list[str]]:
    """(rows, errors): rows ``{"index", "id", "label", "image", "text", "aspect"}``."""
    rows, errors = [], []
    lines = list(_lines(path))
    if not lines:
        return rows, [f"{path}: empty index"]
    header = [h.strip() for h in lines[0]]
    if layout == "njustkmg":
        cols = {}
        for name in ("Label", "ImageID", "String"):
            if name not in header:
                return rows, [f"{path}:1: no {name!r} column in header {header!r}"]
            cols[name] = header.index(name)
    for n, fields in enumerate(lines[1:], start=2):
        if not fields or all(not f.strip() for f in fields):
            continue
        snippet = "\t".join(fields)[:80]
        try:
            if layout == "tombert":
                if len(fields) < 5:
                    raise ValueError(f"{len(fields)} fields, expected 5")
                rid, label, image, text, aspect = fields[:5]
            else:
                rid = str(n - 2)
                label, image, text = fields[cols["Label"]], fields[cols["ImageID"]], fields[cols["String"]]
                aspect = fields[header.index("Target")] if "Target" in header else ""
            row = {"index": len(rows), "id": rid.strip(), "label": parse_label(label),
                   "image": image_path(root, image), "text": text, "aspect": aspect, "line": n}
        except (ValueError, IndexError) as exc:
            errors.append(f"{path}:{n}: {exc}: {snippet!r}")
            continue
        rows.append(row)
    return rows, errors


class Twitter15Spec(DatasetSpec):
    name = "twitter15"
    split_index = "per_split"  # each split file numbers its own lines
    modalities = ("text", "image")
    num_classes = 3
    class_names = CLASSES
    split_files = SPLIT_FILES
    published = PUBLISHED
    image_mean, image_std = MEAN, STD

    def layouts(self):
        return ("tombert", "njustkmg")

    def presets(self):
        paper = {
            "text": {**it.text_options(128), "aspect": "keep"},
            "image": it.image_options(224, self.image_mean, self.image_std),
        }
        smoke = {
            "text": {**it.text_options(16, it.TINY, it.TINY), "aspect": "keep"},
            "image": it.image_options(32, self.image_mean, self.image_std, "none", (1, 1, 1, 1)),
        }
        return {"paper": paper, "smoke": smoke}

    # ------------------------------------------------------------------ layout and index
    def index_dir(self, root: Path, layout: str) -> Path:
        return root / "annotations" if layout == "njustkmg" else root

    def detect_layout(self, root: Path) -> str | None:
        for layout in ("njustkmg", "tombert"):
            if (self.index_dir(root, layout) / self.split_files["train"]).is_file():
                return layout
        return None

    def _layout_or_raise(self, root: Path) -> str:
        layout = self.detect_layout(root)
        if layout is None:
            raise DataError(self._no_layout(root))
        return layout

    def _no_layout(self, root: Path) -> str:
        return (f"{root} matches no {self.name} layout: expected tombert {root}/train.tsv or njustkmg "
                f"{root}/annotations/train.tsv (with dev.tsv, test.tsv and {IMAGE_DIR}/)")

    def read_split(self, root: Path, split: str) -> list[dict]:
        root = Path(root)
        layout = self._layout_or_raise(root)
        path = self.index_dir(root, layout) / self.split_files[split]
        if not path.is_file():
            raise DataError(f"{path} is missing: the {layout} layout needs it")
        rows, errors = read_index(path, layout, root)
        if errors:
            raise DataError(f"cannot parse {errors[0]}" + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""))
        return rows

    def splits(self, root, cfg):
        return {s: list(range(len(self.read_split(root, s)))) for s in ("train", "val", "test")}

    def build(self, split, root, train, cfg):
        rows = self.read_split(root, split)
        aspect = cfg.options.get("text", {}).get("aspect", "keep")
        return it.build_dataset(rows, list(range(len(rows))), cfg.options, aspect, drop=cfg.drop_missing)

    def backbones(self, cfg):
        return it.backbones(cfg.options)

    # ------------------------------------------------------------------ check
    def check(self, root, cfg):
        deep, strict = chk.check_flags(cfg)
        root, layout, problems = chk.root_layout(root, self.detect_layout, self._no_layout)
        if problems:
            return problems
        for split, fname in self.split_files.items():
            path = self.index_dir(root, layout) / fname
            if not path.is_file():
                problems.append(Problem("error", f"{path} is missing: the {layout} layout needs it"))
                continue
            rows, errors = read_index(path, layout, root)
            problems += [Problem("error", f"unparseable index line {e}") for e in errors]
            problems += self._check_rows(rows, split, path, layout, deep, strict, chk.dropping(cfg))
        problems += it.check_weights(cfg.options) if cfg is not None and cfg.options else []
        return problems

    def _check_rows(self, rows, split, path, layout, deep, strict, drop) -> list[Problem]:
        out = []
        if layout == "tombert":
            out += chk.duplicate_rows(rows, path, "id", "ids", prefix="id ")[1]
        counts = tuple(np.bincount([r["label"] for r in rows], minlength=self.num_classes).tolist())
        out += chk.count_mismatch(f"{path}: rows per class ({'/'.join(self.class_names)})", counts,
                                  self.published[split], strict)
        images = sorted({r["image"] for r in rows})
        absent = [p for p in images if not p.is_file()]
        out += chk.missing(f"images named by {path}", absent,
                           f"copy them into {images[0].parent if images else IMAGE_DIR}", drop)
        out += chk.unreadable_images(images, deep, "image")
        return out

    # ------------------------------------------------------------------ fixture
    def write_fixture(self, root, layout=None, n_per_class=2, seed=0):
        """TomBERT tsvs (5-name train/dev header, 4-name test header) or njustkmg tsvs; tweets
        with ``$T$`` and ``"``; consecutive rows share an image."""
        layout = layout or "tombert"
        if layout not in self.layouts():
            raise DataError(f"unknown {self.name} layout {layout!r}; choose {', '.join(self.layouts())}")
        root = Path(root)
        rng = np.random.default_rng(seed)
        idx_dir = self.index_dir(root, layout)
        idx_dir.mkdir(parents=True, exist_ok=True)
        image_no = 1860693
        for split, fname in SPLIT_FILES.items():
            lines = []
            if layout == "tombert":
                header = TOMBERT_TEST_HEADER if split == "test" else TOMBERT_HEADER
            else:
                header = ("index", "Label", "ImageID", "String", "Target")
            lines.append("\t".join(header))
            k = 0
            for c in range(self.num_classes):
                for j in range(n_per_class):
                    if j % 2 == 0:
                        image_no += 1
                        it.write_jpg(root / IMAGE_DIR / f"{image_no}.jpg", rng, (24 + j, 20))
                    aspect = f"RT @user{k}"
                    text = f'"{it.fixture_sentence(rng)}" $T$ {it.fixture_sentence(rng, 3)}'
                    image_id = f"{image_no}.jpg" if k % 3 else str(image_no)  # the extension may be absent
                    lines.append("\t".join([str(k), str(c), image_id, text, aspect]))
                    k += 1
            (idx_dir / fname).write_text("\n".join(lines) + "\n", encoding="utf-8")
        return root

    def write_raw_fixture(self, root, n_per_class=2, seed=0):
        raw_twitter15(Path(root), n_per_class, seed)

    def prepare(self, raw, out, jobs, progress, **options):
        from mmbench.datasets.prepare.image_text import prepare_twitter15

        return prepare_twitter15(raw, out, jobs, progress, **options)


# --------------------------------------------------------------------------- fixtures

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


register_dataset(Twitter15Spec())
