"""A video that decodes to less than its container's stated duration is named in the prepare
summary and record ("truncated: decoded 0.1 s of 2.3 s") and skipped unless --keep-partial."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mmbench.cli import cli
from mmbench.datasets.prepare.common import truncated
from mmbench.datasets.raw_fixtures import write_raw


def _cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def test_the_truncation_rule_has_slack_for_the_last_frame():
    assert not truncated(2.267, 2.266, 30) and not truncated(2.2, 2.266, 30)
    assert truncated(0.1, 2.5, 30) and not truncated(0.1, None, 30)


@pytest.mark.slow
def test_a_truncated_video_is_named_and_skipped_unless_keep_partial(tmp_path):
    raw = write_raw("cremad", tmp_path / "raw", n_per_class=1)
    bad = sorted(raw.rglob("*.flv"))[0]
    bad.write_bytes(bad.read_bytes()[:1200])  # the head of the file: a few frames, the full stated duration
    out = tmp_path / "out"
    res = _cli("data", "prepare", "cremad", "--from", raw, "--out", out, "--no-progress")
    assert res.exit_code == 0, res.output
    assert str(bad) in res.output and "truncated: decoded" in res.output and "1 skipped" in res.output
    record = json.loads((out / "mmbench-prepare.json").read_text())
    assert "truncated: decoded" in record["failed"][bad.stem]
    kept = tmp_path / "kept"
    res = _cli("data", "prepare", "cremad", "--from", raw, "--out", kept, "--no-progress", "--keep-partial")
    assert res.exit_code == 0 and "0 skipped" in res.output, res.output
    assert bad.stem not in json.loads((kept / "mmbench-prepare.json").read_text())["failed"]
