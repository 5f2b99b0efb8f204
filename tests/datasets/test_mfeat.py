"""specs/datasets.md §8: the embedded real data, its split, inputs and check."""

import numpy as np
import torch

from mmbench.benchmark.config import DataConfig
from mmbench.benchmark.registry import get_dataset
from mmbench.datasets import mfeat as mf


def test_split_matches_the_spec_regression_values():
    s = mf.mfeat_splits(0)
    assert [len(s[k]) for k in ("train", "val", "test")] == [1400, 300, 300]
    assert s["test"][:8] == [7, 14, 29, 31, 32, 33, 46, 56] and sum(s["test"]) == 299_349
    assert s["val"][:8] == [3, 12, 21, 24, 26, 45, 49, 51] and sum(s["val"]) == 301_234
    assert not set(s["train"]) & set(s["val"]) and not set(s["train"]) & set(s["test"])


def test_split_is_stratified_and_depends_only_on_the_split_seed():
    labels = mf.read_view("pix")[1]
    s = mf.mfeat_splits(0)
    assert np.bincount(labels[s["test"]]).tolist() == [30] * 10
    assert mf.mfeat_splits(0) == s and mf.mfeat_splits(1) != s


def test_items_have_the_spec_shapes_and_labels():
    spec = get_dataset("mfeat3")
    ds = spec.build("train", None, True, DataConfig(options={"limit_train_per_class": 0}))
    item = ds[0]
    assert item["image"].shape == (1, 16, 15) and item["fourier"].shape == (76,) and item["morph"].shape == (6,)
    assert 0.0 <= ds.tensors["image"].min() and ds.tensors["image"].max() <= 1.0
    assert len(ds) == 1400 and isinstance(item["label"], int)
    assert spec.modalities == ("image", "fourier", "morph")


def test_standardisation_is_fitted_on_train_only():
    spec = get_dataset("mfeat")
    cfg = DataConfig(options={"limit_train_per_class": 0})
    train = spec.build("train", None, True, cfg).tensors["fourier"]
    test = spec.build("test", None, False, cfg).tensors["fourier"]
    assert torch.allclose(train.mean(0), torch.zeros(76), atol=1e-5)
    assert torch.allclose(train.std(0, unbiased=False), torch.ones(76), atol=1e-4)
    assert not torch.allclose(test.mean(0), torch.zeros(76), atol=1e-2)


def test_encoders_give_128_features():
    spec = get_dataset("mfeat3")
    bb = spec.backbones(DataConfig())
    x = {"image": torch.zeros(2, 1, 16, 15), "fourier": torch.zeros(2, 76), "morph": torch.zeros(2, 6)}
    for m, (factory, dim) in bb.items():
        assert dim == 128 and factory()(x[m]).shape == (2, 128)


def test_check_passes_on_the_shipped_files_and_names_a_corrupt_or_missing_copy(tmp_path, monkeypatch):
    spec = get_dataset("mfeat")
    assert spec.check(None, DataConfig()) == []
    (tmp_path / "mfeat-pix.csv.gz").write_bytes((mf.data_dir() / "mfeat-pix.csv.gz").read_bytes())
    (tmp_path / "mfeat-fou.csv.gz").write_bytes(b"not gzip")
    monkeypatch.setattr(mf, "data_dir", lambda: tmp_path)
    mf.read_view.cache_clear()
    try:
        problems = spec.check(None, DataConfig())
        assert [p.level for p in problems] == ["error", "error"]
        assert all(str(tmp_path / "mfeat-fou.csv.gz") in p.message for p in problems)
        assert "sha256" in problems[0].message and "cannot be read" in problems[1].message
        (tmp_path / "mfeat-fou.csv.gz").unlink()
        problems = spec.check(None, DataConfig())
        assert len(problems) == 1 and "mfeat-fou.csv.gz is missing" in problems[0].message
    finally:
        mf.read_view.cache_clear()
