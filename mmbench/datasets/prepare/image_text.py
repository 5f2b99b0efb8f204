"""``mmbench data prepare`` for Twitter-15 and Sarcasm: find the public release's files under
``--from``, check that each index file parses and each image decodes, and lay them out as the
loader's first layout (``twitter15.py``, ``sarcasm.py``); files are hard-linked (copied across file
systems), never changed.

- Twitter-15 (TomBERT release: ``absa_data/twitter2015/{train,dev,test}.tsv``, images in
  ``IJCAI2019_data/twitter2015_images/``) -> ``<out>/{train,dev,test}.tsv`` and
  ``<out>/twitter2015_images/`` (layout ``tombert``).
- Sarcasm (HFM release: ``text/{train,valid2,test2}.txt``, images ``dataset_image/<id>.jpg``)
  -> ``<out>/text/`` and ``<out>/images/`` (layout ``hfm``).

An image that does not decode is named, not linked, and listed in the record; its rows stay in
the index (the published split is not changed), so ``data check`` reports it as missing until
it is replaced or ``--set data.drop_missing=true`` skips it.
"""

from __future__ import annotations

from pathlib import Path

from mmbench.datasets.prepare import common
from mmbench.results.errors import DataError


def _find_dir_with(raw: Path, names: tuple[str, ...]) -> Path:
    """The first folder under ``raw`` (sorted, ``raw`` itself first) holding every file in ``names``."""
    for d in [raw] + sorted(p for p in raw.rglob("*") if p.is_dir()):
        if all((d / n).is_file() for n in names):
            return d
    raise DataError(f"no folder under {raw} holds {', '.join(names)}: point --from at the public release")


def _find_images(raw: Path, names: tuple[str, ...]) -> Path:
    for d in sorted(p for p in raw.rglob("*") if p.is_dir() and p.name in names):
        return d
    raise DataError(f"no image folder ({' or '.join(names)}) under {raw}")


def _images(src: Path, dst: Path, n_jobs: int, progress: bool) -> common.Outcome:
    """Decode every image of ``src`` (media_check, in parallel) and link the good ones to ``dst``."""
    from mmbench.datasets import media_check

    files = sorted(p for p in src.iterdir() if p.is_file())
    failed = media_check.verify([(p, "image") for p in files], src, jobs=n_jobs)
    outcome = common.Outcome(failed={p.name: why for p, why in failed.items()})
    for p in files:
        if p in failed:
            print(f"skipped: {failed[p]}")
            continue
        if (dst / p.name).is_file() and (dst / p.name).stat().st_size == p.stat().st_size:
            outcome.resumed += 1
        else:
            common.link_or_copy(p, dst / p.name)
        outcome.done.append(p.name)
    return outcome


def prepare_twitter15(raw: Path, out: Path, n_jobs: int, progress: bool, **_) -> tuple[common.Outcome, dict]:
    from mmbench.datasets.twitter15 import IMAGE_DIR, SPLIT_FILES

    names = tuple(SPLIT_FILES.values())
    index_dir = _find_dir_with(raw, names)
    for name in names:
        common.link_or_copy(index_dir / name, out / name)
    outcome = _images(_find_images(raw, (IMAGE_DIR,)), out / IMAGE_DIR, n_jobs, progress)
    return outcome, {"layout": "tombert", "index_from": str(index_dir)}


def prepare_sarcasm(raw: Path, out: Path, n_jobs: int, progress: bool, **_) -> tuple[common.Outcome, dict]:
    names = ("train.txt", "valid2.txt", "test2.txt")
    index_dir = _find_dir_with(raw, names)
    for name in names:
        common.link_or_copy(index_dir / name, out / "text" / name)
    outcome = _images(_find_images(raw, ("dataset_image", "images")), out / "images", n_jobs, progress)
    return outcome, {"layout": "hfm", "index_from": str(index_dir)}
