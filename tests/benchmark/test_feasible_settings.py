"""Settings are checked for feasibility, not only range: each refused in one line before anything is
written; a non-finite loss names the settings that most likely caused it; a large --seeds says it
is planning."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mmbench.benchmark.config import parse_overrides, resolve_config
from mmbench.benchmark.config_checks import nonfinite_hint
from mmbench.cli import cli
from mmbench.errors import ConfigError, NonFiniteLossError


def _cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--set", "lr=1e300"], "train.lr must be <= 1e+38"),
        (["--set", "train.threads=100000"], "train.threads must be at most this machine's"),
        (["--seed-start", "-1"], "seeds must be >= 0"),
        (["--set", "data.limit_train_per_class=-1"], "data.limit_train_per_class must be an integer >= 0"),
        (["--set", "lr=0.1", "--set", "train.lr=0.2"], "--set lr is given twice (0.1 and 0.2)"),
        (["--set", "data.val_fraction=0.2"], "data.val_fraction has no effect on mfeat"),
        (["-m", "ogm_ge", "--set", "method.alpha=nan"], "method.alpha must be a finite number"),
        (["-m", "ogm_ge", "--set", "method.alpha=inf"], "method.alpha must be a finite number"),
    ],
)
def test_an_infeasible_setting_is_one_line_and_nothing_is_written(tmp_path, args, expected):
    method = [] if "-m" in args else ["-m", "joint"]
    res = _cli("run", "-d", "mfeat", *method, *args, "--results", tmp_path / "r", "--no-progress")
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and expected in lines[0], res.output
    assert not (tmp_path / "r").exists()


def test_feasible_settings_still_resolve_and_keep_their_identity():
    cfg = resolve_config("mfeat", "joint", parse_overrides(["lr=0.1", "lr=0.1", "data.val_fraction=0"], once=True))
    assert cfg.train.lr == 0.1 and cfg.data.val_fraction == 0
    assert resolve_config("mfeat", "joint", {}).tag is None  # defaults: no tag, same run folder as before


def test_a_non_finite_loss_names_the_likely_settings():
    cfg = resolve_config("mfeat", "ogm_ge", {"lr": 5.0, "method.alpha": 3.0, "batch_size": 8})
    err = NonFiniteLossError(3, "loss", nonfinite_hint(cfg))
    assert str(err).startswith("non-finite loss at epoch 3; the settings most likely to cause it:")
    assert "lr=5.0" in str(err) and "method.alpha=3.0" in str(err) and "--rerun" in str(err)
    plain = nonfinite_hint(resolve_config("mfeat", "joint", {}))
    assert "train.lr=0.01 (the default)" in plain


def test_duplicate_keys_with_one_value_are_allowed():
    assert parse_overrides(["epochs=2", "train.epochs=2"], once=True) == {"epochs": 2, "train.epochs": 2}
    with pytest.raises(ConfigError, match="given twice"):
        parse_overrides(["epochs=2", "epochs=3"], once=True)
    assert parse_overrides(["epochs=2", "epochs=3"]) == {"epochs": 3}  # programmatic lists: the last wins


def test_a_large_seed_count_says_it_is_planning(tmp_path, monkeypatch):
    from mmbench.benchmark import launch

    monkeypatch.setattr(launch, "MANY_SEEDS", 3)
    monkeypatch.setattr(launch, "PLAN_PROGRESS_S", -1)  # a progress line after every run
    lines = []
    launch.plan(launch.seed_jobs("mfeat", "joint", range(4), {"epochs": 1}), tmp_path, echo=lines.append)
    assert len(lines) == 4 and lines[-1].startswith("planning: 3/4 runs checked")
