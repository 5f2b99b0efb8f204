"""``mmbench.testing.check_dataset`` on every built-in dataset (fixture -> clean check ->
disjoint splits -> items with every modality -> whole batches equal ``default_collate`` ->
backbones give the declared sizes), and on specs that break the contract."""

from __future__ import annotations

import pytest
import torch

from mmbench.benchmark import registry
from mmbench.datasets.base import BuiltDataset, DatasetSpec, TensorDictDataset
from mmbench.datasets.mfeat import MfeatSpec
from mmbench.testing import ConformanceError, check_dataset

QUICK = ("mfeat", "mfeat3")
SLOW = ("cremad", "kinetics_sounds", "vggsound", "nvgesture", "twitter15", "sarcasm")  # decoding, CNN forwards


def test_every_builtin_dataset_is_covered():
    assert set(QUICK) | set(SLOW) == set(registry.dataset_names())


@pytest.mark.parametrize("name", QUICK)
def test_builtin_dataset_is_conformant(name, tmp_path):
    report = check_dataset(name, None if registry.get_dataset(name).embedded else tmp_path / name)
    assert report.passed[-5:] == ["check", "splits", "items", "batches", "backbones"], report


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_builtin_dataset_with_media_is_conformant(name, tmp_path):
    report = check_dataset(name, tmp_path / name)
    assert report.passed == ["fixture", "check", "splits", "items", "batches", "backbones"], report


def test_capabilities_are_the_hooks_a_spec_implements():
    assert registry.get_dataset("cremad").capabilities() == {"fixture", "raw_fixture", "prepare"}
    assert registry.get_dataset("mfeat").capabilities() == frozenset()
    assert DatasetSpec().capabilities() == frozenset()


class _Overlapping(MfeatSpec):
    """mfeat whose test split repeats two train items."""

    def splits(self, root, cfg):
        out = super().splits(root, cfg)
        return {**out, "test": out["test"] + out["train"][:2]}


class _WrongSize(MfeatSpec):
    def backbones(self, cfg):
        return {m: (f, d + 1) for m, (f, d) in super().backbones(cfg).items()}


class _Shuffled(TensorDictDataset):
    def batch(self, idx):
        return super().batch(idx.flip(0))


class _BadBatch(MfeatSpec):
    def build(self, split, root, train, cfg):
        ds = super().build(split, root, train, cfg)
        return _Shuffled(ds.tensors, ds.labels, ds.indices)


class _Plain(MfeatSpec):
    def build(self, split, root, train, cfg):
        return torch.utils.data.Subset(super().build(split, root, train, cfg), [0, 1])


@pytest.mark.parametrize(
    "spec, check, says",
    [
        (_Overlapping, "splits", "2 items in both test and train"),
        (_WrongSize, "backbones", "declared"),
        (_BadBatch, "batches", "differs from default_collate"),
        (_Plain, "items", "not a BuiltDataset"),
    ],
)
def test_a_broken_spec_is_refused_by_the_check_it_breaks(spec, check, says):
    name = f"broken_{check}"
    broken = spec(name, {"image": "pix", "fourier": "fou"})
    with pytest.raises(ConformanceError, match=rf"\[{name}\] {check}: .*{says}"):
        check_dataset(broken)
    assert name not in registry.dataset_names()


def test_built_datasets_declare_what_the_harness_reads():
    ds = registry.get_dataset("mfeat").build("train", None, True, _mfeat_cfg())
    assert isinstance(ds, BuiltDataset) and ds.in_memory and not ds.builds_batches
    sub = ds.subset([0, 2])
    assert isinstance(sub, BuiltDataset) and sub.labels.tolist() == [ds.labels[0], ds.labels[2]]


def _mfeat_cfg():
    from mmbench.benchmark.config import resolve_config

    return resolve_config("mfeat", "joint", {}).data


def test_the_worked_example_of_adding_a_dataset_is_conformant(tmp_path):
    import re
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "adding-a-dataset.md").read_text()
    spec_code, test_code = re.findall(r"```python\n(.*?)```", doc, re.S)[:2]
    with registry.DATASETS.scoped():
        namespace = {"__name__": "pairs_example"}
        exec(compile(spec_code, "adding-a-dataset.md", "exec"), namespace)
        assert registry.get_dataset("pairs") is namespace["SPEC"]
        exec(compile(test_code, "adding-a-dataset.md", "exec"), namespace)
        namespace["test_pairs_is_conformant"](tmp_path)
        report = check_dataset("pairs", tmp_path / "again")
        assert report.passed == ["fixture", "check", "splits", "items", "batches", "backbones"]
    assert "pairs" not in registry.dataset_names()
