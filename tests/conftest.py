"""Shared test helpers: tiny run settings and a CLI runner."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mmbench.cli import cli

# a quick but real configuration on the embedded data: 2 epochs, 20 train rows per class
TINY = ["epochs=2", "data.limit_train_per_class=20"]


def invoke(*args: str):
    """Run the mmbench CLI in-process; returns click's Result (exit_code, output)."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def results(tmp_path):
    return tmp_path / "results"


@pytest.fixture(autouse=True)
def _private_user_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own user cache (media-check memos, derived class lists)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))


# ---------------------------------------------------------------------------- test tiers
# The `slow` tier (pyproject.toml markers) is marked at the test: `@pytest.mark.slow` on end-to-end
# runs, CLI sessions and subprocesses (8 s or more each under load; BENCHMARKS.md, "Test tiers"), or
# `pytestmark = pytest.mark.slow` for a file of them. `pytest -q -m "not slow"` is the quick loop.
# Each tier has a time limit (pytest-timeout): the `timeout` of pyproject.toml for every test, and
# QUICK_TIMEOUT for a quick one, so a test that outgrows its tier fails instead of slowing the loop.
QUICK_TIMEOUT = 300  # s; the slowest quick item (a module fixture training 3 runs) took 119 s at load 22


def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("timeout"):  # pytest-timeout: the dev extra
        return
    for item in items:
        if item.get_closest_marker("slow") is None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(QUICK_TIMEOUT))
