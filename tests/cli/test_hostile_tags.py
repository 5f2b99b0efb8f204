"""Names that are path-safe: a hostile ``--tag`` (or suite tag) is refused in one line before
anything is written, and no run folder can leave the results root."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mmbench.cli import cli
from mmbench.errors import ConfigError
from mmbench.results import names, store

HOSTILE = ["../../x", "a/b", "/abs", "..", ".", "a\nb", "tab\tx", "x" * 300, ".hidden", "-rf", "a b", "é", "a\x00b",
           "semi;colon", "$(id)", "a\\b"]


def _cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


@pytest.mark.parametrize("tag", HOSTILE)
def test_a_hostile_tag_is_refused_in_one_line_and_nothing_is_written(tmp_path, tag):
    results = tmp_path / "deep" / "results"
    res = _cli("run", "-m", "joint", "-d", "mfeat", "--results", results, "--tag", tag, "--set", "epochs=1")
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert len(res.output.strip().splitlines()) == 1 and "--tag" in res.output and "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == []  # nothing at all, inside or outside the root


def test_a_hostile_tag_in_a_suite_file_is_refused_before_training(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nseeds = 1\n[[runs]]\ndatasets = ["mfeat"]\nmethods = ["joint"]\ntag = "../escape"\n')
    res = _cli("sweep", suite, "--results", tmp_path / "r", "--dry-run")
    assert res.exit_code == 2 and "--tag" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "escape").exists() and not (tmp_path / "r").exists()


def test_a_good_tag_and_long_automatic_tags_stay_one_folder_part():
    names.check_tag("lr0.01_wd=1e-4+x")
    long = "_".join(f"key{i}{i}" for i in range(60))
    short = names.short_auto_tag(long)
    assert len(short) <= names.MAX_TAG and short != names.short_auto_tag(long + "_other")
    names.check_tag(short)
    assert names.short_auto_tag("lr0.1") == "lr0.1"  # existing run names are unchanged


def test_run_dir_never_leaves_the_results_root(tmp_path):
    assert store.run_dir(tmp_path, "mfeat", "joint-a", 0) == tmp_path / "mfeat" / "joint-a" / "seed-0"
    for run in ("..", "joint/../../x", "", "."):
        with pytest.raises(ConfigError, match="three levels under the results root"):
            store.run_dir(tmp_path, "mfeat", run, 0)
