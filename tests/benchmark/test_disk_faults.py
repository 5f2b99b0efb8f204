"""Disk faults (read-only, full, a path that is a file, a name too long) end in one line naming the
path and what to do, exit 1, and claim no record that was not written; the seed folder is probed
for writing before training starts. Faults the test machine cannot make for real (we run as
root: chmod does not stop writes) are simulated as the OSError the kernel raises."""

from __future__ import annotations

import errno
import os

import pytest
from click.testing import CliRunner

from mmbench.benchmark import store
from mmbench.cli import cli

RUN = ["run", "-m", "joint", "-d", "mfeat", "--set", "epochs=2", "--set", "data.limit_train_per_class=5", "--no-progress"]


def _cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def _one_error_line(res) -> str:
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return errors[0]


def _records(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from reporting_fixtures import write_run

    root = tmp_path / "records"
    write_run(root, "mfeat", "joint", 0, {"fusion": 0.9, "image": 0.8, "fourier": 0.7}, epochs=3)
    return root


def test_a_results_path_below_a_file_is_one_line_before_training(tmp_path):
    (tmp_path / "afile").write_text("x")
    res = _cli(*RUN, "--results", tmp_path / "afile" / "r")
    line = _one_error_line(res)
    assert res.exit_code == 1 and "afile is a file, not a folder" in line


def test_a_results_path_with_a_name_too_long_is_one_line(tmp_path):
    res = _cli(*RUN, "--results", tmp_path / ("y" * 300))
    assert res.exit_code == 1 and "choose a shorter" in _one_error_line(res)


@pytest.mark.parametrize("command", ["table", pytest.param("report", marks=pytest.mark.slow)])
def test_an_out_path_whose_parent_is_a_file_is_one_line(tmp_path, command):
    records = _records(tmp_path)
    (tmp_path / "afile").write_text("x")
    res = _cli(command, "--results", records, "--out", tmp_path / "afile" / "out.html")
    assert res.exit_code == 1 and "is a file, not a folder" in _one_error_line(res)


def test_a_read_only_results_folder_is_refused_before_training(tmp_path, monkeypatch):
    real_open = open

    def read_only(path, *a, **k):
        if ".write-probe-" in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(store, "open", read_only, raising=False)
    res = _cli(*RUN, "--results", tmp_path / "r")
    line = _one_error_line(res)
    assert res.exit_code == 1 and "Read-only file system" in line and "writable" in line
    (seed,) = (tmp_path / "r").glob("mfeat/*/seed-0")
    assert sorted(p.name for p in seed.iterdir()) == []  # nothing trained, nothing recorded


@pytest.mark.slow
def test_a_disk_that_fills_up_mid_run_names_the_file_and_claims_no_record(tmp_path, monkeypatch):
    real_replace = os.replace

    def full(src, dst):
        if str(dst).endswith(store.CHECKPOINT):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full)
    res = _cli(*RUN, "--results", tmp_path / "r")
    line = _one_error_line(res)
    assert res.exit_code == 1 and "last.ckpt" in line and "No space left on device" in line
    assert "record marked failed" not in res.output
    (seed,) = (tmp_path / "r").glob("mfeat/*/seed-0")
    assert not (seed / store.RESULT).exists() and not list(seed.glob(".*.tmp"))
