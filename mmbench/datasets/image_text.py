"""Shared pieces of the image-text datasets Twitter-15 and Sarcasm.

- Text: the lowercase ``bert-base-uncased`` WordPiece tokenizer (hub name or local folder), as
  TPAMI-AMSS ``AMSS_IT/MyDataset.py``: truncate to ``max_len`` ids and right-pad with 0; no
  ``[CLS]``/``[SEP]`` unless ``text.special_tokens``. All texts are tokenised once when the split is
  built (an (N, L) int64 tensor). ``"tiny"`` is a built-in vocabulary for CPU smoke runs.
- Image: RGB, ``Resize((S, S))``, ``ToTensor()``, ``Normalize(mean, std)``; no augmentation.
- Backbones: BERT text branch and ResNet50 image branch, each projected to 256 (§1.7), and the
  weight checks of §9.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import torch

from mmbench.backbones import resnet50 as rn50
from mmbench.backbones import text as textbb
from mmbench.datasets.base import BuiltDataset, Problem
from mmbench.results.errors import ConfigError, DataError

TINY = textbb.TINY
tiny_vocab = textbb.tiny_vocab  # the tiny tokenizer spells with the tiny BERT's vocabulary


def text_options(max_len: int = 128, tokenizer: str = "bert-base-uncased", model: str = "bert-base-uncased") -> dict:
    return {"max_len": max_len, "tokenizer": tokenizer, "special_tokens": False, "attention_mask": False,
            "model": model}


def image_options(size: int, mean, std, weights: str = "IMAGENET1K_V2", layers=(3, 4, 6, 3)) -> dict:
    return {"size": size, "mean": list(mean), "std": list(std), "weights": weights, "layers": list(layers)}


# --------------------------------------------------------------------------- tokenizer
@functools.cache
def load_tokenizer(name: str):
    """The lowercase BERT WordPiece tokenizer of a hub name or local folder, or the tiny one."""
    from transformers import BertTokenizer

    if name == TINY:
        path = Path(tempfile.gettempdir()) / "mmbench-tiny-vocab.txt"
        text = "\n".join(tiny_vocab()) + "\n"
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        return BertTokenizer(vocab_file=str(path), do_lower_case=True)
    try:
        return BertTokenizer.from_pretrained(
            str(Path(name).expanduser()) if textbb.looks_like_path(name) else name, do_lower_case=True
        )
    except OSError as exc:
        raise DataError(
            f"cannot load the tokenizer {name!r} ({exc}); set data.text.tokenizer to a local folder "
            "holding vocab.txt, or to a Hugging Face hub name reachable from this machine"
        ) from None


def encode_texts(texts: list[str], opts: dict, pairs: list[str] | None = None) -> torch.Tensor:
    """(N, max_len) int64 ids: WordPiece, truncated, right-padded with 0 (§6 "Text")."""
    tok = load_tokenizer(opts["tokenizer"])
    special = bool(opts.get("special_tokens", False))
    if pairs is not None and not special:
        raise ConfigError("text.aspect=pair needs special tokens: add --set data.text.special_tokens=true")
    enc = tok(
        list(texts),
        list(pairs) if pairs is not None else None,
        add_special_tokens=special,
        truncation=True,
        max_length=int(opts["max_len"]),
        padding="max_length",
    )
    ids = torch.tensor(enc["input_ids"], dtype=torch.long)
    if tok.pad_token_id != 0:
        ids[ids == tok.pad_token_id] = 0
    return ids


# --------------------------------------------------------------------------- dataset
def image_transform(opts: dict):
    from torchvision import transforms

    s = int(opts["size"])
    return transforms.Compose(
        [transforms.Resize((s, s)), transforms.ToTensor(), transforms.Normalize(opts["mean"], opts["std"])]
    )


def load_image(path: Path, transform) -> torch.Tensor:
    from PIL import Image

    from mmbench.results.errors import MediaError

    try:
        with Image.open(path) as im:
            return transform(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # a damaged image: one line naming it
        raise MediaError.of(path, exc) from None


class ImageTextDataset(BuiltDataset):
    """Items ``{"text": (L,) int64, "image": (3,S,S) float32, "label": int, "index": int}``; token
    ids are precomputed, images decoded per item."""

    def __init__(self, ids: torch.Tensor, images: list[Path], labels, indices, image_opts: dict):
        self.ids = ids
        self.images = list(images)
        self.labels = [int(v) for v in labels]
        self.indices = [int(v) for v in indices]
        self.image_opts = image_opts
        self.transform = image_transform(image_opts)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {
            "text": self.ids[i],
            "image": load_image(self.images[i], self.transform),
            "label": self.labels[i],
            "index": self.indices[i],
        }


def build_dataset(rows: list[dict], positions: list[int], opts: dict, aspect_mode: str = "keep",
                  drop: bool | None = False) -> ImageTextDataset:
    """Rows are dicts with ``text``, ``image`` (Path), ``label``, ``index`` (and ``aspect``).
    With ``drop`` (``data.drop_missing``), rows whose image is absent are skipped and counted in
    the dataset's ``dropped`` (reason -> count); their ``index`` values stay as in the file."""
    chosen = [rows[p] for p in positions]
    dropped = {}
    if drop:
        kept = [r for r in chosen if r["image"].is_file()]
        if len(kept) != len(chosen):
            dropped["missing image"] = len(chosen) - len(kept)
        chosen = kept
    texts = [r["text"] for r in chosen]
    pairs = None
    if aspect_mode == "fill":
        texts = [r["text"].replace("$T$", r.get("aspect", "")) for r in chosen]
    elif aspect_mode == "pair":
        pairs = [r.get("aspect", "") for r in chosen]
    elif aspect_mode != "keep":
        raise ConfigError(f"text.aspect must be keep, fill or pair, got {aspect_mode!r}")
    ids = encode_texts(texts, opts["text"], pairs) if chosen else torch.zeros(0, opts["text"]["max_len"], dtype=torch.long)
    ds = ImageTextDataset(
        ids, [r["image"] for r in chosen], [r["label"] for r in chosen], [r["index"] for r in chosen], opts["image"]
    )
    ds.dropped = dropped
    return ds


# --------------------------------------------------------------------------- backbones
def backbones(opts: dict) -> dict:
    t, im = opts["text"], opts["image"]

    def text():
        return textbb.BertTextEncoder(t["model"], textbb.FEATURE_DIM, attention_mask=bool(t["attention_mask"]))

    def image():
        return rn50.ResNet50Encoder(im["weights"], rn50.FEATURE_DIM, tuple(im["layers"]))

    return {"text": (text, textbb.FEATURE_DIM), "image": (image, rn50.FEATURE_DIM)}


def check_weights(opts: dict) -> list[Problem]:
    """§9 "Weights": local files or folders that are absent are errors; hub names that are not
    cached yet are warnings (they are downloaded on first use)."""
    out = []
    for key in ("model", "tokenizer"):
        name = str(opts["text"][key])
        if name == TINY:
            continue
        if textbb.looks_like_path(name):
            p = Path(name).expanduser()
            need = "config.json" if key == "model" else "vocab.txt"
            if not (p / need).is_file():
                out.append(Problem("error", f"data.text.{key} = {p}: no {need} there; point it at a folder "
                                            "saved with save_pretrained(), or use the hub name bert-base-uncased"))
        elif not _hub_cached(name):
            out.append(Problem("warn", f"data.text.{key} = {name!r} is not in the Hugging Face cache; it will be "
                                       "downloaded on first use (give a local folder to run offline)"))
    w = opts["image"]["weights"]
    if not rn50.is_scratch(w):
        if str(w) in rn50.PUBLISHED:
            if not rn50.weights_cached(str(w)):
                out.append(Problem("warn", f"data.image.weights = {w}: not in the torch hub cache; torchvision "
                                           "downloads it on first use (or give a local .pth file, or 'none')"))
        elif not Path(str(w)).expanduser().is_file():
            out.append(Problem("error", f"data.image.weights = {w}: file not found; give a torchvision ResNet50 "
                                        "state dict, IMAGENET1K_V2, or data.image.weights=none to train from scratch"))
    return out


def _hub_cached(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # noqa: BLE001 - no hub client: treat as not cached
        return False


# --------------------------------------------------------------------------- fixtures
def write_jpg(path: Path, rng: np.random.Generator, size=(24, 20)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format="JPEG")


FIXTURE_WORDS = ("good", "bad", "day", "love", "people", "new", "time", "great", "sad", "happy", "today")


def fixture_sentence(rng: np.random.Generator, n: int = 6) -> str:
    return " ".join(rng.choice(FIXTURE_WORDS, size=n))
