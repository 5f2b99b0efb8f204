"""Third-party methods through the entry-point group ``mmbench.methods``.

The example plugin (examples/plugin_method) is pip-installed into a temporary directory and a
deliberately broken plugin package is written there by hand (a dist-info with entry points);
``mmbench`` then runs in subprocesses with that directory on PYTHONPATH, as an installed
environment would see them. Registry rules without installation use fake entry points.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mmbench.benchmark import registry
from mmbench.errors import MMBenchError

pytestmark = pytest.mark.slow  # end-to-end sessions: every test of this file is in the slow tier

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "plugin_method"
TINY = ["--set", "epochs=2", "--set", "data.limit_train_per_class=10"]


def _env(*paths: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), str(REPO)])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


_SESSION = """
import json, sys
from click.testing import CliRunner
from mmbench.cli import cli
exec(sys.argv[2])
results = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(cli, args)
    crash = None if r.exception is None or isinstance(r.exception, SystemExit) else repr(r.exception)
    results.append({"code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr, "crash": crash})
print("@@RESULTS@@" + json.dumps(results))
"""


def mmbench(commands, *paths: Path, prelude: str = "") -> list[dict]:
    """Run ``mmbench`` commands in one fresh interpreter that sees the packages under ``paths``
    (entry points are discovered as in an installed environment; one start-up for all of them).
    ``prelude``: Python run first in that interpreter. Returns ``{code, stdout, stderr}`` each."""
    proc = subprocess.run(
        [sys.executable, "-c", _SESSION, json.dumps([[str(a) for a in c] for c in commands]), prelude],
        env=_env(*paths),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "@@RESULTS@@" in proc.stdout, proc.stdout + proc.stderr
    results = json.loads(proc.stdout.split("@@RESULTS@@")[1])
    for c, r in zip(commands, results):
        assert r["crash"] is None, f"mmbench {c} crashed: {r['crash']}\n{r['stderr']}"
    return results


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """examples/plugin_method installed with pip into a fresh directory (from a copy, so the
    build leaves nothing in the repository)."""
    tmp = tmp_path_factory.mktemp("plugin")
    src = shutil.copytree(EXAMPLE, tmp / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    site = tmp / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", site, src],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return site


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory) -> Path:
    """A hand-built distribution with three broken entry points: an import error, a class that
    is not a Method, and a second ``joint``."""
    site = tmp_path_factory.mktemp("broken")
    pkg = site / "mmbench_broken"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "missing.py").write_text("import a_module_that_does_not_exist\n")
    (pkg / "wrong.py").write_text("class NotAMethod:\n    name = 'not_a_method'\n")
    (pkg / "dup.py").write_text(
        "from mmbench.methods.base import Method\n\nclass Joint(Method):\n    name = 'joint'\n"
    )
    info = site / "mmbench_broken-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mmbench-broken\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [mmbench.methods]
            needs_missing = mmbench_broken.missing:Method
            not_a_method = mmbench_broken.wrong:NotAMethod
            joint = mmbench_broken.dup:Joint
            """
        )
    )
    return site


def _line(text: str, name: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.split() and ln.split()[0] == name]
    assert lines, f"{name} not listed in:\n{text}"
    return lines[0]


# --------------------------------------------------------------------------- installed plugin
@pytest.fixture(scope="module")
def plugin_session(plugin_site, tmp_path_factory) -> dict:
    """One interpreter with the example plugin installed: list the methods; train moddrop, stop
    it after one epoch (as a preempted job) and resume it with `mmbench run`, train joint next to
    it and render the table; sweep a suite of joint and moddrop (uninterrupted) elsewhere."""
    tmp = tmp_path_factory.mktemp("session")
    resumed, swept = tmp / "resumed", tmp / "swept"
    suite = tmp / "plugin_suite.toml"
    suite.write_text(
        '[suite]\ndescription = "joint vs the moddrop plugin"\nseeds = 1\ndatasets = ["mfeat"]\n'
        'methods = ["joint", "moddrop"]\nset = { epochs = 2, "data.limit_train_per_class" = 10 }\n'
    )
    prelude = textwrap.dedent(
        f"""\
        from mmbench.benchmark.config import resolve_config
        from mmbench.benchmark.trainer import Interrupted, train_run
        cfg = resolve_config("mfeat", "moddrop", {{"epochs": 2, "data.limit_train_per_class": 10}})
        try:
            train_run(cfg, {str(resumed)!r}, progress=False, stop_after_epochs=1, echo=lambda *a: None)
            raise SystemExit("train_run did not stop")
        except Interrupted:
            pass
        """
    )
    run = ["run", "-d", "mfeat", "--no-progress", *TINY]
    names = ("list", "resume", "joint", "table", "sweep", "swept_table")
    results = mmbench(
        [
            ["list", "methods"],
            [*run, "-m", "moddrop", "--results", resumed],
            [*run, "-m", "joint", "--results", resumed],
            ["table", "--results", resumed, "--dataset", "mfeat"],
            ["sweep", suite, "--results", swept],
            ["table", "--results", swept, "--dataset", "mfeat"],
        ],
        plugin_site,
        prelude=prelude,
    )
    return {**dict(zip(names, results)), "resumed": resumed, "swept": swept}


def test_example_plugin_is_listed_with_its_package_and_version(plugin_session):
    listing = plugin_session["list"]
    out = listing["stdout"]
    assert listing["code"] == 0
    assert "mmbench-moddrop 0.1.0" in _line(out, "moddrop")
    assert "ModDrop" in _line(out, "moddrop")
    assert "mmbench 0.1.0" in _line(out, "joint")
    assert "broken plugins" not in out


def test_example_plugin_runs_resumes_and_is_tabled_next_to_joint(plugin_session):
    resume, joint = plugin_session["resume"], plugin_session["joint"]
    assert resume["code"] == 0 and "resuming" in resume["stdout"] and "1 trained" in resume["stdout"], resume
    assert joint["code"] == 0 and plugin_session["sweep"]["code"] == 0

    (seed_dir,) = plugin_session["resumed"].glob("mfeat/moddrop-*/seed-0")
    name = seed_dir.parent.name  # moddrop-<tag of the tiny settings>
    a = json.loads((seed_dir / "result.json").read_text())
    b = json.loads((plugin_session["swept"] / "mfeat" / name / "seed-0" / "result.json").read_text())
    assert a["status"] == "finished" and a["selection"] == b["selection"]  # b: the sweep's, uninterrupted
    config = json.loads((seed_dir / "config.json").read_text())
    assert config["environment"]["method_package"] == "mmbench-moddrop 0.1.0"
    history = [json.loads(ln) for ln in (seed_dir / "history.jsonl").read_text().splitlines()]
    assert set(history[0]["diagnostics"]) == {"kept_image", "kept_fourier"}

    text = plugin_session["table"]["stdout"]
    assert _table_rows(text) == {name, name.replace("moddrop", "joint", 1)}, text


def test_example_plugin_is_swept_and_tabled_like_a_builtin_method(plugin_session):
    assert plugin_session["sweep"]["code"] == 0, plugin_session["sweep"]
    records = sorted(p.parent.parent.name for p in plugin_session["swept"].glob("mfeat/*/seed-0/result.json"))
    assert [r.split("-")[0] for r in records] == ["joint", "moddrop"]
    assert _table_rows(plugin_session["swept_table"]["stdout"]) == set(records)


def _table_rows(markdown: str) -> set[str]:
    """Run names of the rows of `mmbench table`'s markdown."""
    return {ln.split("|")[1].strip() for ln in markdown.splitlines() if ln.startswith("| ") and "fusion" not in ln}


def test_example_plugin_passes_its_own_conformance_tests(plugin_site):
    """The plugin author's test file (unit tests + check_method) against the installed package.
    ``-n 0``: the file's three tests run in that one pytest process (this repository's addopts
    would otherwise start an xdist worker per core, each importing torch, for three tests)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        env=_env(plugin_site),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=plugin_site,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout


# --------------------------------------------------------------------------- broken plugins
def test_broken_plugins_are_reported_by_name_and_builtins_still_work(broken_site, plugin_site, tmp_path):
    tiny = ["--set", "epochs=1", "--set", "data.limit_train_per_class=5"]
    listing, broken_run, joint_run = mmbench(
        [
            ["list", "methods"],
            ["run", "-m", "needs_missing", "-d", "mfeat", "--results", tmp_path],
            ["run", "-m", "joint", "-d", "mfeat", "--results", tmp_path, "--no-progress", *tiny],
        ],
        broken_site,
        plugin_site,
    )
    assert listing["code"] == 0
    listed, _, broken = listing["stdout"].partition("broken plugins")
    assert "mmbench 0.1.0" in _line(listed, "joint") and _line(listed, "unimodal")
    assert "mmbench-moddrop 0.1.0" in _line(listed, "moddrop")
    assert "needs_missing" not in listed and "not_a_method" not in listed
    assert "mmbench-broken 0.0.1" in _line(broken, "needs_missing")
    assert "ModuleNotFoundError" in _line(broken, "needs_missing")
    assert "a_module_that_does_not_exist" in _line(broken, "needs_missing")
    assert "not a subclass of mmbench.methods.base.Method" in _line(broken, "not_a_method")
    assert "duplicate method name 'joint': already provided by mmbench 0.1.0" in _line(broken, "joint")

    assert broken_run["code"] == 2
    assert broken_run["stderr"].startswith("error: method 'needs_missing' is a broken plugin: ")
    assert len(broken_run["stderr"].strip().splitlines()) == 1

    assert joint_run["code"] == 0, joint_run
    (config,) = tmp_path.glob("mfeat/joint-*/seed-0/config.json")
    assert json.loads(config.read_text())["environment"]["method_package"] == "mmbench 0.1.0"


# --------------------------------------------------------------------------- registry rules
class _FakeDist:
    def __init__(self, name, version):
        self.name, self.version = name, version


class _FakeEntryPoint:
    """Stands in for ``importlib.metadata.EntryPoint`` (whose ``dist`` cannot be set)."""

    def __init__(self, name, target, dist=("fake-pkg", "1.2.3")):
        self.name, self.value, self._target = name, f"fake.module:{name}", target
        self.dist = _FakeDist(*dist) if dist else None
        self.group = registry.METHOD_ENTRY_POINT

    def load(self):
        if isinstance(self._target, BaseException):
            raise self._target
        return self._target


@pytest.fixture
def fresh_registry():
    """A scoped copy of the registries with the built-ins only; restored after the test."""
    with registry.METHODS.scoped(plugins=False) as methods, registry.DATASETS.scoped(plugins=False):
        yield methods.load_entry_points


def _method(name, **attrs):
    from mmbench.methods.joint import Joint

    return type(f"M_{name}", (Joint,), {"name": name, "__module__": "fake.module", **attrs})


def test_plugin_registers_under_its_name_with_its_package(fresh_registry):
    cls = _method("fancy")
    fresh_registry([_FakeEntryPoint("fancy", cls)])
    assert registry.get_method("fancy") is cls
    assert registry.method_origin("fancy") == "fake-pkg 1.2.3"
    assert "fancy" not in registry.builtin_method_names()


def test_plugin_failures_of_every_kind_are_recorded_and_others_still_load(fresh_registry):
    from dataclasses import dataclass

    @dataclass
    class NeedsValue:
        x: float

    good = _method("good")
    fresh_registry(
        [
            _FakeEntryPoint("exits", SystemExit(3)),
            _FakeEntryPoint("renamed", _method("other_name")),
            _FakeEntryPoint("nodefault", _method("nodefault", Hyper=NeedsValue)),
            _FakeEntryPoint("instance", object()),
            _FakeEntryPoint("good", good, dist=None),
            _FakeEntryPoint("unimodal", _method("unimodal"), dist=("a-pkg", "0.1")),
        ]
    )
    errors = registry.plugin_errors()
    assert set(errors) == {"exits", "renamed", "nodefault", "instance", "unimodal"}
    assert "cannot import fake.module:exits: SystemExit" in errors["exits"]
    assert "entry-point name 'renamed' differs from fake.module:renamed.name 'other_name'" in errors["renamed"]
    assert "give every field a default" in errors["nodefault"]
    assert "object is not a subclass" in errors["instance"]
    assert errors["unimodal"].startswith("unimodal (a-pkg 0.1): duplicate method name 'unimodal'")
    assert registry.get_method("good") is good and registry.method_origin("good") == "unknown package"
    assert registry.get_method("unimodal").__module__ == "mmbench.methods.unimodal"
    with pytest.raises(MMBenchError, match="'exits' is a broken plugin"):
        registry.get_method("exits")


def test_plugins_load_in_package_order_so_duplicates_resolve_the_same_everywhere(fresh_registry):
    first, second = _method("twin"), _method("twin")
    fresh_registry(
        [_FakeEntryPoint("twin", second, dist=("zz-pkg", "1")), _FakeEntryPoint("twin", first, dist=("aa-pkg", "1"))]
    )
    assert registry.get_method("twin") is first
    assert "already provided by aa-pkg 1" in registry.plugin_errors()["twin"]
