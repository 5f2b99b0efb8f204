"""``mmbench config``: the resolved config as TOML, every value with its source, the identity hash."""

from __future__ import annotations

import re
import tomllib

from click.testing import CliRunner

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.identity import identity_hash
from mmbench.cli import cli

TAGS = ("[code]", "[paper", "[shared]", "[guess]", "[set]", "[default]")


def _invoke(*args):
    res = CliRunner().invoke(cli, ["config", *args])
    assert res.exit_code == 0, res.output
    return res.output


def test_config_prints_every_resolved_value_with_a_source_and_the_identity_hash():
    out = _invoke("-m", "pmr", "-d", "cremad", "--set", "protocol=official", "--set", "method.alpha=3")
    cfg = resolve_config("cremad", "pmr", {"protocol": "official", "method.alpha": 3})
    parsed = tomllib.loads(out)
    assert parsed["train"]["epochs"] == 130 and parsed["train"]["optimizer"] == "adam"
    assert parsed["train"]["betas"] == [0.9, 0.99]
    assert parsed["method"] == cfg.method_params
    assert parsed["data"]["options"]["audio"]["seconds"] == cfg.data.options["audio"]["seconds"]
    assert f"# identity hash: {identity_hash(cfg)}" in out
    assert "# reported rule: test-best" in out
    values = [ln for ln in out.splitlines() if ln and not ln.startswith(("#", "["))]
    assert len(values) > 30
    for line in values:
        source = line.split("  # ", 1)[1]
        assert source.startswith(TAGS), line
    assert re.search(r"^epochs = 130  # \[code\] bash.sh:222", out, re.M)
    assert re.search(r"^alpha = 3.0  # \[set\] --set method.alpha=3", out, re.M)


def test_diff_shows_only_what_differs_from_the_shared_protocol():
    out = _invoke("-m", "ogm_ge", "-d", "cremad", "--set", "protocol=official", "--diff")
    parsed = tomllib.loads(out)
    shared = resolve_config("cremad", "ogm_ge", {})
    official = resolve_config("cremad", "ogm_ge", {"protocol": "official"})
    assert parsed["protocol"] == "official"
    assert parsed["train"] == {
        "epochs": 100, "lr": 1e-3, "step_at": "epoch_end", "amp": "off"
    }
    assert parsed["data"] == {"val_fraction": 0.0}
    assert parsed["method"] == {"modulation_ends": 50}
    assert shared.method_params["modulation_ends"] == 100 != official.method_params["modulation_ends"]
    assert _invoke("-m", "ogm_ge", "-d", "cremad", "--diff").count(" = ") == 0  # shared vs itself


def test_bad_config_request_is_one_line_with_exit_2():
    res = CliRunner().invoke(cli, ["config", "-m", "gblend", "-d", "cremad", "--set", "protocol=official"])
    assert res.exit_code == 2 and "publishes no training setup" in res.output
    assert len(res.output.strip().splitlines()) == 1
