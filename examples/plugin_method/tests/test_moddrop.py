"""Tests of the ModDrop plugin, as a plugin author writes them: the selectors, and the kit."""

import torch
from mmbench_moddrop import ModDrop

from mmbench.testing import check_method


def _method(p):
    return ModDrop(ModDrop.Hyper(p=p), ("image", "fourier"), 10, {"image": 3, "fourier": 2})


def test_moddrop_zeroes_whole_modalities_per_sample():
    torch.manual_seed(0)
    feats = {"image": torch.ones(1000, 3), "fourier": torch.ones(1000, 2)}
    dropped, keep = _method(0.25).drop(feats)
    for i, m in enumerate(("image", "fourier")):
        rows = dropped[m]
        assert torch.equal(rows, keep[:, i : i + 1].float().expand_as(rows))  # all of a row or none
    assert abs(keep.float().mean().item() - 0.75) < 0.05


def test_moddrop_with_p_zero_keeps_every_feature_and_with_p_one_drops_all():
    feats = {"image": torch.randn(8, 3), "fourier": torch.randn(8, 2)}
    kept, _ = _method(0.0).drop(feats)
    gone, _ = _method(1.0).drop(feats)
    assert all(torch.equal(kept[m], feats[m]) for m in feats)
    assert all(not gone[m].any() for m in feats)


def test_moddrop_passes_the_mmbench_conformance_kit():
    report = check_method(ModDrop)
    assert set(report.passed) == {"mfeat", "mfeat3"}
