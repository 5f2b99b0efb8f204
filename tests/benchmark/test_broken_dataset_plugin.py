"""A dataset plugin whose import fails is named with its package and error (as a broken method
plugin is), not reported as an unknown dataset."""

from __future__ import annotations

import pytest

from mmbench.benchmark import registry
from mmbench.datasets.registry import DATASET_ENTRY_POINT, DATASETS
from mmbench.results import registry as results_registry
from mmbench.results.errors import MMBenchError


class _Dist:
    name, version = "broken-data", "0.3"


class _BrokenEntryPoint:
    name, value, dist, group = "weird", "broken_data.spec:WEIRD", _Dist(), DATASET_ENTRY_POINT

    def load(self):
        raise ImportError("No module named 'broken_data_deps'")


def test_a_broken_dataset_plugin_is_named_with_its_error(monkeypatch):
    monkeypatch.setattr(
        results_registry, "entry_points", lambda group: [_BrokenEntryPoint()] if group == DATASET_ENTRY_POINT else []
    )
    with DATASETS.scoped(plugins=False):
        DATASETS.load_entry_points([_BrokenEntryPoint()])
        registry.require_names(dataset="weird")  # the entry-point name is known: no "unknown dataset"
        with pytest.raises(MMBenchError) as info:
            registry.get_dataset("weird")
    message = str(info.value)
    assert message.startswith("dataset 'weird' is a broken plugin: weird (broken-data 0.3):")
    assert "broken_data.spec:WEIRD" in message and "No module named 'broken_data_deps'" in message
    assert "unknown dataset" not in message
