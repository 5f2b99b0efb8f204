"""An ``official`` run on a CREMA-D fixture: fp32, the whole train set, no validation split,
``test-best`` as the reported rule; the run record says so (CLI end to end, real loaders)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.registry import get_dataset
from mmbench.cli import cli
from mmbench.datasets.fixtures import write_fixture


def test_official_cremad_run_is_fp32_on_the_whole_train_set(tmp_path):
    root = write_fixture("cremad", tmp_path / "cremad", "ogm")
    results = tmp_path / "results"
    sets = ["protocol=official", "data.preset=smoke", "epochs=1", "batch_size=8"]
    args = ["run", "-m", "ogm_ge", "-d", "cremad", "--root", str(root), "--results", str(results), "--no-progress"]
    res = CliRunner().invoke(cli, args + [x for s in sets for x in ("--set", s)])
    assert res.exit_code == 0, res.output
    (run,) = (results / "cremad").glob("ogm_ge*/seed-0")
    result = json.loads((run / "result.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert result["precision"] == "fp32" and config["train"]["amp"] == "off"
    assert result["reported_rule"] == "test-best"
    assert set(result["selection"]) == {"last", "test-best"}  # no val split, so no val rule
    assert result["checkpoints"]["test-best"]["file"] == "best.ckpt"
    assert config["data"]["val_fraction"] == 0.0 and "val" not in config["splits"]
    # the whole train split: every train row of the fixture's index
    cfg = resolve_config("cremad", "ogm_ge", {"data.preset": "smoke", "data.val_fraction": 0.0})
    whole = get_dataset("cremad").splits(root, cfg.data)["train"]
    shared = resolve_config("cremad", "ogm_ge", {"data.preset": "smoke"})
    carved = get_dataset("cremad").splits(root, shared.data)["train"]
    assert config["splits"]["train"] == len(whole) > len(carved)
    history = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    assert len(history) == 1 and all(h["val"] is None and h["test"]["fusion"]["acc"] >= 0 for h in history)
    # the default table (val rule) names the run instead of dropping it; test-best shows it
    table = CliRunner().invoke(cli, ["table", "--results", str(results)])
    assert table.exit_code == 0, table.output
    assert "no 'val' selection" in table.output and "--select test-best" in table.output
    shown = CliRunner().invoke(cli, ["table", "--results", str(results), "--select", "test-best"])
    assert shown.exit_code == 0 and "ogm_ge" in shown.output and "no 'val' selection" not in shown.output
