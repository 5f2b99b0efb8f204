"""Batched device-side augmentation (data.cache.augment=device): torchvision's crop sampling, the
per-frame transform's pixels, and seeded, resumable runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from scipy.stats import ks_2samp
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms.v2 import functional as TF

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.loaders import EpochLoader
from mmbench.benchmark.registry import get_dataset
from mmbench.benchmark.trainer import Interrupted, train_run
from mmbench.cli import cli
from mmbench.datasets.device_augment import BatchAugment, crop_boxes, resized_crops
from mmbench.datasets.fixtures import write_fixture
from mmbench.errors import DataError


@pytest.mark.parametrize("height,width", [(224, 224), (20, 200), (90, 30)])
def test_crop_boxes_follow_torchvision_random_resized_crop_sampling(height, width):
    n = 3000
    mine = crop_boxes(n, height, width, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    img = torch.zeros(1, height, width)
    ref = torch.tensor([RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(n)])
    top, left, h, w = mine.T
    assert (h > 0).all() and (w > 0).all() and (top >= 0).all() and (left >= 0).all()
    assert (top + h <= height).all() and (left + w <= width).all()
    for k, name in enumerate(("top", "left", "h", "w")):  # same marginals (fixed seeds: no flakes)
        assert ks_2samp(mine[:, k].numpy(), ref[:, k].numpy()).pvalue > 0.01, name
    fitted = (h * w).double() / (height * width)
    assert fitted.min() >= 0.08 * 0.8 and fitted.max() <= 1.0


@pytest.mark.parametrize("height,width,box", [(1, 100, (0, 49, 1, 1)), (100, 1, (49, 0, 1, 1)), (3, 60, (0, 28, 3, 4))])
def test_crop_boxes_fall_back_to_torchvision_central_crop(height, width, box):
    """No try fits such thin images: torchvision's central crop with the ratio clamped."""
    torch.manual_seed(0)
    assert RandomResizedCrop.get_params(torch.zeros(1, height, width), [0.08, 1.0], [3 / 4, 4 / 3]) == box
    assert crop_boxes(50, height, width, torch.Generator().manual_seed(1)).tolist() == [list(box)] * 50


def test_resized_crops_match_the_per_frame_transform_for_fixed_boxes():
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8, generator=g)
    boxes = crop_boxes(12, 32, 32, g)
    boxes[0] = torch.tensor([0, 0, 32, 32])  # the whole frame: the identity
    flip = torch.arange(12) % 2 == 1
    out = resized_crops(frames, boxes, 32, flip)
    assert torch.equal(out[0], frames[0].float())
    for k in range(12):
        i, j, h, w = boxes[k].tolist()
        bilinear = F.interpolate(frames[k : k + 1, :, i : i + h, j : j + w].float(), (32, 32), mode="bilinear")[0]
        uint8 = TF.resized_crop(frames[k], i, j, h, w, [32, 32], antialias=True).float()  # today's cached path
        if flip[k]:
            bilinear, uint8 = bilinear.flip(-1), uint8.flip(-1)
        assert torch.allclose(out[k], bilinear, atol=1e-3)
        assert (out[k] - uint8).abs().max() <= 1.0  # one grey level: its fixed-point weights and rounding


def test_batch_augment_normalises_and_permutes_like_the_cached_path():
    from mmbench.datasets.frames import normalize_

    video = torch.randint(0, 256, (2, 3, 3, 8, 8), dtype=torch.uint8)  # (B, T, 3, S, S)
    batch = {"audio": torch.randn(2, 1, 4, 5).half(), "video": video, "label": torch.tensor([0, 1])}
    out = BatchAugment(8, train=False)(batch, None)
    assert torch.equal(out["video"], normalize_(video.permute(0, 2, 1, 3, 4).float(), dim=1))
    assert out["audio"].dtype == torch.float32 and torch.equal(out["audio"], batch["audio"].float())
    train = BatchAugment(8, train=True)
    a = train(batch, torch.Generator().manual_seed(3))["video"]
    b = train(batch, torch.Generator().manual_seed(3))["video"]
    assert a.shape == (2, 3, 3, 8, 8) and torch.equal(a, b)


@pytest.fixture()
def cremad_cached(tmp_path):
    root = write_fixture("cremad", tmp_path / "cremad", "ogm")
    res = CliRunner().invoke(cli, ["data", "cache", "cremad", "--root", str(root), "--preset", "smoke"])
    assert res.exit_code == 0, res.output
    return root


def _cfg(**extra):
    sets = {"data.preset": "smoke", "data.cache.augment": "device", "epochs": 2, "batch_size": 8, **extra}
    return resolve_config("cremad", "joint", sets)


def test_device_loader_yields_model_ready_batches_equal_at_test(cremad_cached):
    spec = get_dataset("cremad")
    on_device = spec.build("test", cremad_cached, False, _cfg().data)
    today = spec.build("test", cremad_cached, False, _cfg(**{"data.cache.augment": "loader"}).data)
    assert on_device.device_transform is not None and today.device_transform is None
    got = list(EpochLoader(on_device, 4, False, device="cpu"))
    want = list(EpochLoader(today, 4, False))
    for a, b in zip(got, want, strict=True):
        for k in ("audio", "video", "label", "index"):
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    train = spec.build("train", cremad_cached, True, _cfg().data)
    loader = EpochLoader(train, 4, True, seed=5, device="cpu")
    epochs = []
    for _ in range(2):
        loader.set_epoch(1)
        torch.manual_seed(0)  # the frame draws (global RNG, as today); crops come from the loader
        epochs.append([b["video"] for b in loader])
    assert epochs[0][0].shape == (4, 3, 1, 32, 32) and epochs[0][0].dtype == torch.float32
    assert all(torch.equal(a, b) for a, b in zip(*epochs))


@pytest.mark.slow
def test_device_augmented_run_is_seeded_and_resumes_exactly(cremad_cached, tmp_path):
    cfg = _cfg()
    quiet = {"progress": False, "echo": lambda *_: None}
    full = train_run(cfg, tmp_path / "a", root=cremad_cached, **quiet)
    with pytest.raises(Interrupted):
        train_run(cfg, tmp_path / "c", root=cremad_cached, stop_after_epochs=1, **quiet)
    resumed = train_run(cfg, tmp_path / "c", root=cremad_cached, **quiet)
    assert resumed["selection"] == full["selection"]  # epoch 2's crops redrawn from (seed, epoch)


def test_device_augment_refuses_a_bad_value_and_a_missing_cache(tmp_path):
    root = write_fixture("cremad", tmp_path / "plain", "ogm")
    spec = get_dataset("cremad")
    with pytest.raises(DataError, match="mmbench data cache"):
        spec.build("train", root, True, _cfg().data)
    bad = _cfg(**{"data.cache.augment": "gpu"}).data
    assert any("choose loader or device" in p.message for p in spec.check(root, bad))


@pytest.mark.slow
def test_bench_data_only_reports_every_path_and_appends(cremad_cached, tmp_path):
    out = tmp_path / "BENCH.md"
    args = ["bench", "--data-only", "-d", "cremad", "--root", str(cremad_cached), "--set", "data.preset=smoke",
            "--set", "batch_size=4", "--set", "data.num_workers=0", "--device", "cpu", "--rounds", "1",
            "--steps", "2", "--append", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    table = out.read_text()
    for path in ("decode", "cached", "cached-device"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {path} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1:6] == ["0", "1", "cpu", "4", "2"] and float(cells[6].strip("*").replace(",", "")) > 0
    plain = write_fixture("cremad", tmp_path / "nocache", "ogm")
    res = CliRunner().invoke(cli, [*args[:4], "--root", str(plain), *args[6:-2]])
    assert res.exit_code == 0 and "no decoded cache" in res.output and "mmbench data cache" in res.output
