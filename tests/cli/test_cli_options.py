"""The options every command shares, declared once (``mmbench.cli.options``): one ``--root``
grammar, ``--jobs`` for every count of processes, ``--device auto``, one dry-run listing."""

import subprocess
import sys

import click
import pytest

from mmbench.cli import cli
from mmbench.cli.options import ROOT_METAVAR, dataset_root, parse_roots
from mmbench.errors import MMBenchError

from conftest import invoke


def _options(command=cli, path=()):
    """(command path, option) for every option of every command and sub-command."""
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _options(sub, (*path, name))
        return
    for param in command.params:
        if isinstance(param, click.Option):
            yield " ".join(path), param


def test_root_has_one_grammar_and_one_parser():
    assert parse_roots(["cremad=/data/CREMA-D", "sarcasm=/d/s=1"], ["cremad", "sarcasm"]) == {
        "cremad": "/data/CREMA-D", "sarcasm": "/d/s=1"}
    assert parse_roots(["/data/CREMA-D"], ["cremad"]) == {"cremad": "/data/CREMA-D"}  # a one-dataset command
    assert parse_roots(["/data"], ["cremad", "mfeat"]) == {"cremad": "/data/cremad", "mfeat": "/data/mfeat"}
    assert parse_roots(["/data/a=b"], ["cremad"]) == {"cremad": "/data/a=b"}  # a path, not a dataset name
    with pytest.raises(MMBenchError, match="--root expects DATASET=DIR"):
        parse_roots(["/data"])  # nothing to tell which dataset a bare DIR is for
    assert str(dataset_root("mfeat=/x", "mfeat")) == "/x" and dataset_root(None, "mfeat") is None
    with pytest.raises(MMBenchError, match="names dataset 'cremad', but the command reads 'mfeat'"):
        dataset_root("cremad=/x", "mfeat")
    roots = [(cmd, o) for cmd, o in _options() if "--root" in o.opts]
    assert {cmd for cmd, _ in roots} >= {"run", "sweep", "reproduce", "figure", "probe", "bench", "data check",
                                         "data cache"}
    assert {o.metavar for _, o in roots} == {ROOT_METAVAR}


def test_device_defaults_to_auto_and_process_counts_are_jobs_everywhere():
    devices = {cmd: o.default for cmd, o in _options() if o.name == "device"}
    assert set(devices) >= {"run", "sweep", "reproduce", "probe", "bench"} and set(devices.values()) == {"auto"}
    visible = [(cmd, o.opts) for cmd, o in _options() if not o.hidden]
    assert not [v for v in visible if "--workers" in v[1]]
    assert {cmd for cmd, opts in visible if "--jobs" in opts} >= {"run", "sweep", "reproduce", "report",
                                                                  "data prepare", "data cache"}


def test_data_cache_takes_jobs_and_still_the_old_workers(monkeypatch, tmp_path):
    import mmbench.benchmark.trainer
    import mmbench.datasets.cache

    got = []
    monkeypatch.setattr(mmbench.datasets.cache, "build_cache", lambda spec, root, cfg, workers, **kw: got.append(workers))
    monkeypatch.setattr(mmbench.benchmark.trainer, "check_data", lambda spec, root, cfg: (root, []))  # no media needed
    root = tmp_path / "cremad"
    for args, workers in ((["--jobs", "3"], 3), (["--workers", "2"], 2), ([], 0)):
        out = invoke("data", "cache", "cremad", "--root", f"cremad={root}", "--preset", "smoke", *args)
        assert out.exit_code == 0, out.output
        assert got.pop() == workers
    assert "--workers" not in invoke("data", "cache", "--help").output


def test_a_root_for_another_dataset_is_one_line_with_exit_2(tmp_path):
    out = invoke("run", "-m", "joint", "-d", "mfeat", "--root", f"cremad={tmp_path}", "--results", str(tmp_path))
    assert out.exit_code == 2 and out.output.count("\n") == 1
    assert "names dataset 'cremad', but the command reads 'mfeat'" in out.output


def test_sweep_and_reproduce_dry_runs_list_runs_alike(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nseeds = 2\ndatasets = ["mfeat"]\nmethods = ["joint"]\n[paper]\ntables = []\n')
    outs = [invoke(cmd, str(suite), "--dry-run", "--results", str(tmp_path / "r")) for cmd in ("sweep", "reproduce")]
    for out in outs:
        assert out.exit_code == 0, out.output
    lines = [[line for line in out.output.splitlines() if line.startswith("  ")] for out in outs]
    assert lines[0] == lines[1] == ["  pending mfeat/joint seed 0", "  pending mfeat/joint seed 1"]
    assert "estimated GPU-hours" in outs[1].output and "estimated" not in outs[0].output


def test_old_import_paths_and_python_m_keep_working():
    from mmbench.cli import main  # noqa: F401 - the console script's entry point
    from mmbench.cli_common import friendly_errors, parse_roots, results_option  # noqa: F401 - the shim

    proc = subprocess.run([sys.executable, "-m", "mmbench.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "reproduce" in proc.stdout
