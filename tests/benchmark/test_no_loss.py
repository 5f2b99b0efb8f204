"""Nothing finished is lost: ``--rerun`` moves the old records aside and restores them when the new
attempt does not finish; ``data fixture`` / ``data prepare`` / ``data cache`` refuse an output
folder holding other data unless ``--force``, and delete nothing they did not write."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from mmbench.benchmark import replace, store, trainer
from mmbench.cli import cli
from mmbench.errors import MMBenchError

RUN = ["run", "-m", "joint", "-d", "mfeat", "--set", "epochs=2", "--set", "data.limit_train_per_class=5", "--no-progress"]


def _cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    results = tmp_path_factory.mktemp("noloss") / "results"
    assert _cli(*RUN, "--results", results).exit_code == 0
    return results


def _snapshot(seed):
    return {p.name: p.read_bytes() for p in seed.iterdir() if p.is_file() and p.name in replace.FILES}


@pytest.fixture
def results(finished, tmp_path):
    out = tmp_path / "results"
    shutil.copytree(finished, out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("fault", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_rerun_that_does_not_finish_restores_the_old_records(results, monkeypatch, fault):
    (seed,) = results.glob("mfeat/*/seed-0")
    before = _snapshot(seed)

    def fail(*_a, **_k):
        raise fault

    monkeypatch.setattr(trainer, "run_epochs", fail)
    res = _cli(*RUN, "--results", results, "--rerun")
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert _snapshot(seed) == before
    assert not (seed / replace.ASIDE).exists()
    if isinstance(fault, RuntimeError):
        assert "the earlier finished record" in res.output and "record marked failed" not in res.output


@pytest.mark.slow
def test_a_finished_rerun_replaces_the_records_and_drops_the_old_ones(results):
    (seed,) = results.glob("mfeat/*/seed-0")
    old = json.loads((seed / store.RESULT).read_text())
    res = _cli(*RUN, "--results", results, "--rerun")
    assert res.exit_code == 0, res.output
    new = json.loads((seed / store.RESULT).read_text())
    assert new["status"] == "finished" and new["seconds_this_call"] != old["seconds_this_call"]
    assert not (seed / replace.ASIDE).exists()


def test_a_rename_that_fails_midway_moves_everything_back(tmp_path, monkeypatch):
    seed = tmp_path / "seed-0"
    seed.mkdir()
    for name in (store.RESULT, store.HISTORY, store.BEST):
        (seed / name).write_text(name)
    before = _snapshot(seed)
    real, calls = os.replace, []

    def flaky(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise PermissionError(13, "Permission denied")
        real(src, dst)

    monkeypatch.setattr(replace.os, "replace", flaky)
    with pytest.raises(MMBenchError, match="nothing was changed"):
        replace.set_aside(seed)
    assert _snapshot(seed) == before


def test_data_fixture_refuses_a_folder_with_other_data_and_force_keeps_the_users_files(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.csv").write_text("mine\n")
    res = _cli("data", "fixture", "cremad", "--out", out)
    assert res.exit_code == 2 and "--force" in res.output and str(out) in res.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.csv"]
    again = _cli("data", "fixture", "cremad", "--out", out, "--force")
    assert again.exit_code == 0, again.output
    assert (out / "notes.csv").read_text() == "mine\n"
    # its own earlier output is not "other data": a second fixture of the same dataset is allowed
    fresh = tmp_path / "fresh"
    assert _cli("data", "fixture", "cremad", "--out", fresh).exit_code == 0
    assert _cli("data", "fixture", "cremad", "--out", fresh).exit_code == 0
    other = _cli("data", "fixture", "kinetics_sounds", "--out", fresh)
    assert other.exit_code == 2 and "fixture output of cremad" in other.output


def test_data_prepare_refuses_a_folder_with_other_data(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    out.mkdir()
    (out / "annotations.csv").write_text("keep me\n")
    res = _cli("data", "prepare", "cremad", "--from", raw, "--out", out)
    assert res.exit_code == 2 and "--force" in res.output
    assert [p.name for p in out.iterdir()] == ["annotations.csv"]


def test_data_cache_never_deletes_a_folder_that_is_not_its_cache(tmp_path):
    from mmbench.datasets.cache import _refuse_foreign

    folder = tmp_path / "cremad-abc"
    folder.mkdir()
    (folder / "precious.npy").write_bytes(b"x")
    with pytest.raises(MMBenchError, match="not an mmbench cache"):
        _refuse_foreign(folder, "cremad", force=False)
    (folder / "meta.json").write_text(json.dumps({"dataset": "cremad"}))
    _refuse_foreign(folder, "cremad", force=False)  # its own cache: rebuilt as before
