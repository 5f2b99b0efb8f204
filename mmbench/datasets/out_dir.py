"""Output folders of ``mmbench data fixture`` and ``data prepare``: never write over other data.

A tool writes into ``--out`` only when the folder is absent, empty, or already holds the tool's
own work for the same dataset (its marker file: ``mmbench-fixture.json`` of ``data fixture``,
``mmbench-prepare.json`` / ``.mmbench-prepare-started`` of ``data prepare``, which a rerun
resumes). Any other content is refused with one line naming the folder and ``--force``; with
``--force`` the tool writes its files beside the others and deletes nothing it did not write.
"""

from __future__ import annotations

import json
from pathlib import Path

from mmbench.results.errors import DataError

FIXTURE_MARKERS = ("mmbench-fixture.json",)
PREPARE_STARTED = ".mmbench-prepare-started"
PREPARE_MARKERS = ("mmbench-prepare.json", PREPARE_STARTED)


def _marked_for(out: Path, markers, dataset: str) -> str | None:
    """The dataset named by the first marker file present in ``out`` (None when none is)."""
    for name in markers:
        path = out / name
        if path.is_file():
            try:
                return str(json.loads(path.read_text(encoding="utf-8")).get("dataset"))
            except (OSError, ValueError, AttributeError):
                return "(unreadable marker)"
    return None


def check_out_dir(out, dataset: str, markers, command: str, force: bool = False) -> None:
    """Raise ``DataError`` when ``out`` holds data that is not ``command``'s own for ``dataset``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file, not a folder: choose another --out")
    if force or not out.is_dir() or not any(out.iterdir()):
        return
    owner = _marked_for(out, markers, dataset)
    if owner == dataset:
        return
    what = f"the {command} output of {owner}" if owner else "other files"
    raise DataError(
        f"--out {out} already holds {what}; `mmbench data {command}` writes only into an empty folder or its "
        f"own earlier {dataset} output: choose an empty --out, or pass --force to write beside them "
        "(nothing is deleted)"
    )


def mark_started(out, dataset: str) -> None:
    """``data prepare``: note in ``out`` which dataset it is preparing (a rerun resumes it)."""
    path = Path(out) / PREPARE_STARTED
    if not path.is_file():
        path.write_text(json.dumps({"dataset": dataset}) + "\n")
