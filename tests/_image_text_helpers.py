"""Shared helpers of the image-text and NVGesture dataset tests (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from mmbench.benchmark.registry import get_dataset


def cli_smoke_run(dataset: str, root: Path, results: Path, *extra: str):
    """``mmbench run --method joint --dataset D --root FIXTURE --set data.preset=smoke --seeds 1``
    with one epoch; returns (click result, result.json record)."""
    from mmbench.cli import cli

    args = ["run", "--method", "joint", "--dataset", dataset, "--root", str(root), "--results", str(results),
            "--seeds", "1", "--no-progress", "--device", "cpu", "--set", "data.preset=smoke", "--set", "epochs=1"]
    for e in extra:
        args += ["--set", e]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    records = list(Path(results).glob(f"{dataset}/*/seed-0/result.json"))
    return res, (json.loads(records[0].read_text()) if records else None)


def errors(problems) -> list[str]:
    return [p.message for p in problems if p.level == "error"]


def smoke_cfg(dataset: str, **overrides):
    from mmbench.benchmark.config import resolve_config

    return resolve_config(dataset, "joint", {"data.preset": "smoke", **overrides})


def spec(name: str):
    return get_dataset(name)
