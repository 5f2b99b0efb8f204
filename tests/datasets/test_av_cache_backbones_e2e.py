"""ResNet18 encoders, the decoded cache, and end-to-end runs on the audio-visual fixtures."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mmbench.backbones.resnet18 import AudioResNet18, FrameResNet18
from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.registry import get_dataset
from mmbench.benchmark.trainer import Interrupted, train_run
from mmbench.cli import cli
from mmbench.datasets.fixtures import write_fixture
from mmbench.errors import DataError

TORCHVISION_RESNET18_WITHOUT_FC = 11_689_512 - (512 * 1000 + 1000)


@pytest.mark.slow
def test_resnet18_encoders_give_512_features_at_real_size():
    torch.manual_seed(0)
    audio, frames = AudioResNet18(), FrameResNet18()
    assert sum(p.numel() for p in frames.parameters()) == TORCHVISION_RESNET18_WITHOUT_FC
    assert sum(p.numel() for p in audio.parameters()) == TORCHVISION_RESNET18_WITHOUT_FC - 2 * 64 * 49
    audio.eval(), frames.eval()
    with torch.no_grad():
        assert audio(torch.randn(2, 1, 257, 188)).shape == (2, 512)
        assert frames(torch.randn(2, 3, 3, 64, 64)).shape == (2, 512)


def test_frame_encoder_averages_over_time():
    torch.manual_seed(0)
    enc = FrameResNet18(width=4).eval()
    x = torch.randn(1, 3, 2, 32, 32)
    with torch.no_grad():
        both = enc(x)
        one = [enc(x[:, :, t : t + 1]) for t in range(2)]
    assert torch.allclose(both, (one[0] + one[1]) / 2, atol=1e-5)


def test_resnet18_init_follows_ogm_weight_init():
    torch.manual_seed(0)
    enc = AudioResNet18()
    bn = enc.trunk.bn1
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    w = enc.trunk.layer4[0].conv1.weight  # fan_out = 512 * 3 * 3
    assert abs(w.std().item() - (2 / (512 * 9)) ** 0.5) < 2e-3


def cfg_for(dataset, **sets):
    return resolve_config(dataset, "joint", {f"data.{k}": v for k, v in sets.items()})


@pytest.fixture()
def cremad_root(tmp_path):
    return write_fixture("cremad", tmp_path / "cremad", "ogm")


def test_cache_items_equal_decoded_items_and_are_used_automatically(cremad_root):
    spec = get_dataset("cremad")
    data = cfg_for("cremad", preset="smoke").data
    plain = spec.build("test", cremad_root, False, data)
    res = CliRunner().invoke(cli, ["data", "cache", "cremad", "--root", str(cremad_root), "--preset", "smoke"])
    assert res.exit_code == 0, res.output
    cached = spec.build("test", cremad_root, False, data)
    assert type(cached).__name__ == "CachedAVDataset" and cached.labels == plain.labels
    for i in range(len(plain)):
        a, b = plain[i], cached[i]
        assert torch.equal(a["video"], b["video"])
        assert torch.allclose(a["audio"], b["audio"], atol=2e-2, rtol=1e-3)  # float16 storage
        assert a["index"] == b["index"] and a["label"] == b["label"]
    train = spec.build("train", cremad_root, True, data)
    item = train[0]
    assert item["video"].shape == (3, 1, 32, 32) and item["audio"].shape == (1, 33, 126)
    again = CliRunner().invoke(cli, ["data", "cache", "cremad", "--root", str(cremad_root), "--preset", "smoke"])
    assert "up to date" in again.output


def test_stale_cache_is_refused_then_rebuilt(cremad_root):
    spec = get_dataset("cremad")
    data = cfg_for("cremad", preset="smoke").data
    CliRunner().invoke(cli, ["data", "cache", "cremad", "--root", str(cremad_root), "--preset", "smoke"])
    lines = (cremad_root / "test.csv").read_text().splitlines()
    (cremad_root / "test.csv").write_text("\n".join(lines[:-1]) + "\n")  # the index changed
    with pytest.raises(DataError, match="stale"):
        spec.build("test", cremad_root, False, data)
    check = CliRunner().invoke(cli, ["data", "check", "cremad", "--root", str(cremad_root), "--preset", "smoke"])
    assert check.exit_code == 1 and "stale" in check.output
    off = cfg_for("cremad", preset="smoke", **{"cache.mode": "off"}).data
    assert type(spec.build("test", cremad_root, False, off)).__name__ == "AVDataset"
    res = CliRunner().invoke(cli, ["data", "cache", "cremad", "--root", str(cremad_root), "--preset", "smoke"])
    assert res.exit_code == 0 and "wrote" in res.output
    assert type(spec.build("test", cremad_root, False, data)).__name__ == "CachedAVDataset"


def test_cache_refuses_random_start_preset(tmp_path):
    root = write_fixture("vggsound", tmp_path / "v", "ogm")
    res = CliRunner().invoke(cli, ["data", "cache", "vggsound", "--root", str(root), "--preset", "ogm"])
    assert res.exit_code != 0 and "deterministic" in res.output


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["cremad", "kinetics_sounds", "vggsound"])
def test_cli_fixture_check_run_smoke_end_to_end(tmp_path, dataset):
    root = tmp_path / dataset
    runner = CliRunner()
    assert runner.invoke(cli, ["data", "fixture", dataset, "--out", str(root)]).exit_code == 0
    assert runner.invoke(cli, ["data", "check", dataset, "--root", str(root)]).exit_code == 0
    res = runner.invoke(cli, ["run", "--method", "joint", "--dataset", dataset, "--root", str(root), "--set",
                              "data.preset=smoke", "--set", "epochs=2", "--seeds", "1", "--results",
                              str(tmp_path / "res"), "--no-progress"])
    assert res.exit_code == 0, res.output
    result = json.loads(next((tmp_path / "res" / dataset).glob("*/seed-0/result.json")).read_text())
    assert result["status"] == "finished"
    assert set(result["selection"]["val"]["test"]) == {"fusion", "audio", "video"}


def test_run_stops_with_the_check_error_first(tmp_path):
    root = write_fixture("cremad", tmp_path / "c", "ogm")
    next((root / "AudioWAV").iterdir()).unlink()
    res = CliRunner().invoke(cli, ["run", "--method", "joint", "--dataset", "cremad", "--root", str(root), "--set",
                                   "data.preset=smoke", "--results", str(tmp_path / "res"), "--no-progress"])
    assert res.exit_code != 0 and "missing audio files" in res.output


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(cremad_root, tmp_path):
    cfg = resolve_config("cremad", "joint", {"data.preset": "smoke", "epochs": 2, "batch_size": 8})
    full = train_run(cfg, tmp_path / "a", root=cremad_root, progress=False, echo=lambda *_: None)
    with pytest.raises(Interrupted):
        train_run(cfg, tmp_path / "b", root=cremad_root, progress=False, stop_after_epochs=1, echo=lambda *_: None)
    resumed = train_run(cfg, tmp_path / "b", root=cremad_root, progress=False, echo=lambda *_: None)
    assert resumed["selection"] == full["selection"]
    assert np.isfinite(full["selection"]["last"]["test"]["fusion"]["acc"])


def test_cache_max_frames_bounds_frames_per_clip(tmp_path):
    root = write_fixture("kinetics_sounds", tmp_path / "ks", "ogm")
    sets = ["--preset", "smoke", "--set", "data.cache.max_frames=2"]
    res = CliRunner().invoke(cli, ["data", "cache", "kinetics_sounds", "--root", str(root), *sets])
    assert res.exit_code == 0, res.output
    data = cfg_for("kinetics_sounds", preset="smoke", **{"cache.max_frames": 2}).data
    ds = get_dataset("kinetics_sounds").build("train", root, True, data)
    assert type(ds).__name__ == "CachedAVDataset"
    offsets = ds.cache.arrays()[2]
    assert set(np.diff(offsets).tolist()) == {2}  # every fixture clip has 4-6 frames
    assert ds[0]["video"].shape == (3, 2, 32, 32)
    # the default (all frames) is another cache: none is built yet
    assert type(get_dataset("kinetics_sounds").build("train", root, True, cfg_for(
        "kinetics_sounds", preset="smoke").data)).__name__ == "AVDataset"


def test_cached_dataset_pickles_for_dataloader_workers(cremad_root):
    import pickle

    CliRunner().invoke(cli, ["data", "cache", "cremad", "--root", str(cremad_root), "--preset", "smoke"])
    ds = get_dataset("cremad").build("test", cremad_root, False, cfg_for("cremad", preset="smoke").data)
    ds[0]  # opens the memory maps; they must not travel
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[1]["video"], ds[1]["video"]) and torch.equal(clone[1]["audio"], ds[1]["audio"])


class _ItemsOnly(torch.utils.data.Dataset):
    """The cached dataset without ``get_batch``: what EpochLoader did before batched fetching."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds[i]


def _same_batch(a, b):
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


@pytest.fixture()
def ks_cached(tmp_path):
    root = write_fixture("kinetics_sounds", tmp_path / "ks", "ogm")
    res = CliRunner().invoke(cli, ["data", "cache", "kinetics_sounds", "--root", str(root), "--preset", "smoke"])
    assert res.exit_code == 0, res.output
    return root, cfg_for("kinetics_sounds", preset="smoke", frames=3).data


def test_get_batch_equals_collated_items(ks_cached):
    from torch.utils.data import default_collate

    root, data = ks_cached
    spec = get_dataset("kinetics_sounds")
    test = spec.build("test", root, False, data)
    assert type(test).__name__ == "CachedAVDataset"
    idx = list(range(len(test)))[::-1]
    _same_batch(test.get_batch(idx), default_collate([test[i] for i in idx]))
    train = spec.build("train", root, True, data)
    idx = [3, 0, 5, 1, 2][: len(train)]
    torch.manual_seed(7)
    batch = train.get_batch(idx)
    torch.manual_seed(7)
    _same_batch(batch, default_collate([train[i] for i in idx]))  # same random crops, flips and frames
    assert batch["video"].shape == (len(idx), 3, 3, 32, 32)
    sub = train.subset([4, 1])
    assert hasattr(sub, "get_batch") and sub.labels == [train.labels[4], train.labels[1]]
    torch.manual_seed(1)
    batch = sub.get_batch([1, 0])
    torch.manual_seed(1)
    _same_batch(batch, train.get_batch([1, 4]))


@pytest.mark.parametrize("workers", [0, 2])
def test_epoch_loader_batches_equal_item_by_item_loading(ks_cached, workers):
    from mmbench.benchmark.loaders import EpochLoader

    root, data = ks_cached
    train = get_dataset("kinetics_sounds").build("train", root, True, data)
    for shuffle, drop_last in ((True, False), (True, True), (False, False)):
        fast = EpochLoader(train, 4, shuffle, seed=3, drop_last=drop_last, num_workers=workers)
        slow = EpochLoader(_ItemsOnly(train), 4, shuffle, seed=3, drop_last=drop_last, num_workers=workers)
        assert len(fast) == len(slow)
        for epoch in (0, 1):
            fast.set_epoch(epoch)
            slow.set_epoch(epoch)
            torch.manual_seed(epoch)
            got = list(fast)
            torch.manual_seed(epoch)
            want = list(slow)
            assert len(got) == len(want) == len(fast)
            for a, b in zip(got, want):
                _same_batch(a, b)


def test_recycled_batch_memory_is_reused_only_when_unreferenced():
    from mmbench.datasets.batch_memory import Recycled as _Recycled

    pool = _Recycled(per_shape=2, max_bytes=10_000)
    a = pool.tensor((4, 5), torch.float32)
    b = pool.tensor((4, 5), torch.float32)
    assert a.data_ptr() != b.data_ptr()
    first = a.data_ptr()
    view, arr = a[1:], b.numpy()
    del a, b
    c = pool.tensor((4, 5), torch.float32)
    assert c.data_ptr() != first  # a view and a numpy array still hold both pooled arrays
    del view, c
    assert pool.tensor((4, 5), torch.float32).data_ptr() == first
    assert pool.tensor((100, 100), torch.float32).shape == (100, 100) and pool.bytes <= 10_000
    del arr
