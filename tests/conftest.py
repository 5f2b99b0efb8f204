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
