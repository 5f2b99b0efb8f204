"""``mmbench data prepare DATASET --from RAW --out ROOT``: from the files people download to the
tree the dataset's loader reads, through the dataset's ``DatasetSpec.prepare``. One module per
dataset family holds the preparers:
``audiovisual`` (cremad, kinetics_sounds, vggsound), ``nvgesture``, ``image_text`` (twitter15,
sarcasm); ``common`` holds decoding (PyAV), parallel resumable jobs and the record
``<out>/mmbench-prepare.json``.
"""

from __future__ import annotations

from pathlib import Path

from mmbench.datasets import out_dir
from mmbench.results.errors import DataError


def prepare(dataset: str, raw: Path, out: Path, jobs: int = 1, progress: bool = True, keep_partial: bool = False,
            **options):
    """Prepare ``dataset`` from ``raw`` into ``out``; returns (outcome, record path). Raises
    ``DataError`` (one line) for a source that is not the dataset's release, or when no usable
    clip remains. A truncated video is skipped and named unless ``keep_partial``."""
    import os

    from mmbench.datasets.prepare import common
    from mmbench.datasets.registry import DATASETS

    os.environ[common.KEEP_PARTIAL_ENV] = "1" if keep_partial else "0"  # decoding worker processes inherit it
    spec = DATASETS.get(dataset)
    if "prepare" not in spec.capabilities():
        have = [n for n in DATASETS.names() if "prepare" in DATASETS.get(n).capabilities()]
        raise DataError(f"no `data prepare` for {dataset!r}; it prepares: {', '.join(have)}")
    raw, out = Path(raw), Path(out)
    if not raw.is_dir():
        raise DataError(f"--from {raw} is not a directory: point it at the downloaded {dataset} files")
    if raw.resolve() == out.resolve():
        raise DataError("--out must differ from --from: the download is never changed")
    out.mkdir(parents=True, exist_ok=True)
    out_dir.mark_started(out, dataset)  # a rerun into this folder resumes (out_dir.check_out_dir)
    outcome, details = spec.prepare(raw, out, jobs, progress, **options)
    record = common.write_record(out, dataset, raw, outcome, details)
    if not outcome.done:
        raise DataError(f"nothing usable in {raw}: all {len(outcome.failed)} clips failed (listed in {record})")
    return outcome, record
