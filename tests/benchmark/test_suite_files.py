"""Suite files are validated with one line per problem: encoding, TOML syntax (line and column),
types, unknown keys with a did-you-mean; every built-in suite passes."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mmbench.benchmark.suites import load_suite, read_suite, suite_names
from mmbench.cli import cli
from mmbench.errors import ConfigError

BAD = {
    "syntax": (b"[suite\nseeds = 1\n", "line 1, column"),
    "encoding": (b'[suite]\ndescription = "\xff\xfe"\n', "not UTF-8"),
    "suite not a table": (b"suite = 3\n", "suite is int 3, expected a table"),
    "set not a table": (b'[suite]\ndatasets = ["mfeat"]\nmethods = ["joint"]\nset = 2\n', "[suite].set is int"),
    "datasets a string": (b'[suite]\ndatasets = "mfeat"\nmethods = ["joint"]\n', "[suite].datasets is str"),
    "top-level typo": (b'[suit]\ndatasets = ["mfeat"]\n', "did you mean 'suite'"),
    "runs typo": (b'[[runs]]\ndatasets = ["mfeat"]\nmethod = ["joint"]\n', "did you mean 'methods'"),
    "seeds negative": (b'[suite]\nseeds = [-1]\ndatasets = ["mfeat"]\nmethods = ["joint"]\n', "seeds >= 0"),
    "runs not tables": (b'runs = "x"\n', "expected [[runs]] tables"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_suite_file_is_named_with_each_problem_and_no_traceback(tmp_path, case):
    raw, expected = BAD[case]
    path = tmp_path / "s.toml"
    path.write_bytes(raw)
    with pytest.raises(ConfigError, match=r"suite file .*s\.toml") as info:
        load_suite(str(path))
    assert expected in str(info.value)
    res = CliRunner().invoke(cli, ["sweep", str(path), "--dry-run", "--results", str(tmp_path / "r")])
    assert res.exit_code == 2 and expected in res.output and "Traceback" not in res.output
    assert not (tmp_path / "r").exists()


def test_every_problem_gets_its_own_line():
    path_text = b'[suite]\ndatasets = "mfeat"\nsed = 1\n[[runs]]\nmethod = ["joint"]\n[sute]\n'
    from mmbench.benchmark.suites import parse_suite_text

    with pytest.raises(ConfigError) as info:
        parse_suite_text(path_text, "x.toml")
    lines = str(info.value).splitlines()
    assert lines[0] == "suite file x.toml has 4 problem(s):" and len(lines) == 5


@pytest.mark.parametrize("name", suite_names())
def test_every_builtin_suite_is_valid(name):
    data, _ = read_suite(name)
    assert data


def test_a_non_utf8_bench_file_is_one_line(tmp_path):
    from mmbench.benchmark.estimate import read_bench_figures

    path = tmp_path / "bench.md"
    path.write_bytes(b"# \xff\xfe\n")
    with pytest.raises(ConfigError.__mro__[1], match="cannot read the bench figures"):
        read_bench_figures(path)
