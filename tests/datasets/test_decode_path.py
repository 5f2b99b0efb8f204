"""The decode path (issue 17, item 2): frames decoded with libjpeg-turbo and cropped on tensors,
spectrograms written into their batch slot, whole batches from ``AVDataset.get_batch``; each
checked against the reference it replaces (PIL transforms, ``default_collate`` of items, a plain
DataLoader with workers); and the cached resampling filter gives scipy.signal.resample_poly's
samples bit for bit."""

from __future__ import annotations

from math import gcd

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.signal import resample_poly
from torch.utils.data import DataLoader, default_collate
from torchvision.transforms.functional import pil_to_tensor

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.loaders import EpochLoader
from mmbench.benchmark.registry import get_dataset
from mmbench.benchmark.seeding import epoch_generator, worker_init_fn
from mmbench.datasets import audio as A
from mmbench.datasets import frames as Fr
from mmbench.datasets.fixtures import write_fixture

GREY_LEVEL = 1 / 255 / min(Fr.IMAGENET_STD)  # one uint8 step after Normalize


@pytest.fixture(scope="module")
def cremad(tmp_path_factory):
    return write_fixture("cremad", tmp_path_factory.mktemp("dec") / "cremad", "ogm", n_per_class=2)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Smooth 96 x 72 frames (jpg and png, one greyscale jpg): crops to 32 px downscale them."""
    base = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:72, 0:96].astype(np.float32)
    paths = []
    for k in range(4):
        img = np.stack([xx * 2 + 20 * k, yy * 3, 255 - xx - yy], -1) + rng.normal(0, 8, (72, 96, 3))
        img = np.clip(img, 0, 255).astype(np.uint8)
        path = base / (f"f{k}.png" if k == 3 else f"f{k}.jpg")
        Image.fromarray(img if k != 2 else img[..., 0]).save(path, **({} if k == 3 else {"quality": 90}))
        paths.append(path)
    return paths


def test_read_frame_decodes_the_pixels_pil_decodes(photos, cremad):
    files = list(photos) + sorted((cremad / "Image-01-FPS").rglob("*.jpg"))[:6]
    for path in files:
        assert torch.equal(Fr.read_frame(path), pil_to_tensor(Fr.open_rgb(path))), path


@pytest.mark.parametrize("train", [True, False])
def test_the_tensor_frame_path_is_the_pil_transform_within_one_grey_level(photos, train):
    """Same torch RNG draws (box, flip) as RandomResizedCrop + RandomHorizontalFlip, so the RNG
    state after both paths agrees; pixels within one grey level of PIL's bilinear resampling."""
    tf = Fr.frame_transform(32, train)
    for seed in range(12):
        for path in photos:
            torch.manual_seed(seed)
            ref = tf(Fr.open_rgb(path))
            after_ref = torch.get_rng_state()
            torch.manual_seed(seed)
            ours = Fr.load_clip([path], 1, 32, "first", train)[:, 0]
            assert torch.equal(torch.get_rng_state(), after_ref)
            assert ours.shape == ref.shape == (3, 32, 32)
            assert (ours - ref).abs().max() <= GREY_LEVEL + 1e-6, (seed, path)


@pytest.mark.parametrize("n_fft,hop,n", [(512, 353, 22050), (64, 32, 4000), (512, 160, 16001)])
def test_log_spectrogram_is_the_literal_formula_bit_for_bit_also_into_a_batch_slot(n_fft, hop, n):
    x = np.random.default_rng(n).normal(0, 0.3, n).astype(np.float32)
    spec = torch.stft(torch.from_numpy(x), n_fft, hop_length=hop, win_length=n_fft, window=torch.hann_window(n_fft),
                      center=True, pad_mode="constant", return_complex=True)
    ref = torch.log(spec.abs() + A.LOG_EPS)  # librosa.stft defaults, log(|S| + 1e-7)
    assert torch.equal(A.log_spectrogram(x, n_fft, hop), ref)
    out = torch.full((2, 1) + tuple(ref.shape), float("nan"))
    A.log_spectrogram(x, n_fft, hop, out=out[1, 0])
    assert torch.equal(out[1, 0], ref) and torch.isnan(out[0]).all()


def _dataset(root, train: bool, preset: str = "smoke"):
    cfg = resolve_config("cremad", "joint", {"data.preset": preset, "data.cache.mode": "off"}).data
    return get_dataset("cremad").build("train" if train else "test", root, train, cfg)


@pytest.mark.parametrize("train", [True, False])
def test_get_batch_is_default_collate_of_the_items(cremad, train):
    ds = _dataset(cremad, train)
    idx = [4, 0, 7, 2, 5]
    torch.manual_seed(3)
    batch = ds.get_batch(idx)
    torch.manual_seed(3)
    ref = default_collate([ds[i] for i in idx])
    assert batch.keys() == ref.keys()
    for key in ref:
        assert batch[key].dtype == ref[key].dtype and torch.equal(batch[key], ref[key]), key
    sub = ds.subset([1, 3])
    assert sub.indices == [1, 3] and sub.labels == [ds.labels[1], ds.labels[3]]
    torch.manual_seed(0)
    one = sub.get_batch([1])
    torch.manual_seed(0)
    assert torch.equal(one["audio"], ds.get_batch([3])["audio"])


@pytest.mark.slow
def test_epoch_loader_with_workers_gives_a_plain_dataloaders_batches(cremad):
    """The batched route (``get_batch`` in 2 workers, shared memory) against ``DataLoader`` with
    per-item collation and the same generator and worker seeds: the same batches, bit for bit."""
    ds = _dataset(cremad, True)
    loader = EpochLoader(ds, 4, True, seed=5, num_workers=2)
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        ours = list(loader)
        g = torch.Generator()
        g.manual_seed(epoch_generator(5, epoch).initial_seed())
        plain = DataLoader(ds, batch_size=4, shuffle=True, num_workers=2, worker_init_fn=worker_init_fn, generator=g)
        ref = list(plain)
        assert len(ours) == len(ref) == len(loader)
        for a, b in zip(ours, ref):
            assert all(torch.equal(a[k], b[k]) for k in b)


@pytest.mark.parametrize("sr_from,sr_to", [(16000, 22050), (44100, 22050), (48000, 16000), (8000, 11025)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resample_equals_resample_poly_with_its_default_filter(sr_from, sr_to, dtype):
    x = np.random.default_rng(0).standard_normal(sr_from // 4).astype(dtype)
    g = gcd(sr_from, sr_to)
    want = resample_poly(x, sr_to // g, sr_from // g).astype(np.float32)
    for _ in range(2):  # the second call uses the cached filter
        got = A.resample(x, sr_from, sr_to)
        assert got.dtype == np.float32 and np.array_equal(got, want)


@pytest.mark.slow
def test_the_identity_names_the_data_path_and_a_cache_appearing_later_is_refused_not_mixed(tmp_path):
    """``data.cache.mode=auto`` is decided per run from what is on disk (``require`` with a usable
    cache, ``off`` without): a seed trained on the decode path is not resumed or skipped on the
    cached path once a cache is built; it is refused with the differing key, nothing written."""
    from click.testing import CliRunner

    from mmbench.benchmark import store
    from mmbench.benchmark.launch import job_config
    from mmbench.benchmark.suites import Job, freeze
    from mmbench.cli import cli

    root = write_fixture("cremad", tmp_path / "cremad", "ogm")
    sets = ["--set", "data.preset=smoke", "--set", "epochs=1"]
    job = Job("cremad", "joint", 0, overrides=freeze({"data.preset": "smoke", "epochs": 1}), root=str(root))
    cfg, seed = job_config(job, tmp_path / "r")
    assert cfg.data.options["cache"]["mode"] == "off"
    run = ["run", "-m", "joint", "-d", "cremad", "--root", str(root), "--results", str(tmp_path / "r"), "--jobs", "1"]
    first = CliRunner().invoke(cli, run + sets)
    assert first.exit_code == 0, first.output
    before = (seed / store.RESULT).read_bytes()
    built = CliRunner().invoke(cli, ["data", "cache", "cremad", "--root", str(root), "--preset", "smoke"])
    assert built.exit_code == 0, built.output
    assert job_config(job, tmp_path / "r")[0].data.options["cache"]["mode"] == "require"
    again = CliRunner().invoke(cli, run + sets)
    assert again.exit_code == 2 and "data.options.cache.mode" in again.output, again.output
    assert "--rerun" in again.output and (seed / store.RESULT).read_bytes() == before


@pytest.mark.parametrize("name,layout,preset", [
    ("vggsound", "ogm", "ogm"),  # a random audio start per item (torch's RNG), 3 frames
    ("kinetics_sounds", "ogm", "fbank"),  # Kaldi fbank features, written through a copy
    ("kinetics_sounds", "njustkmg", "smoke"),
])
def test_get_batch_is_default_collate_for_every_audio_visual_recipe(tmp_path, name, layout, preset):
    root = write_fixture(name, tmp_path / name, layout)
    cfg = resolve_config(name, "joint", {"data.preset": preset, "data.cache.mode": "off"}).data
    for train in (True, False):
        ds = get_dataset(name).build("train" if train else "test", root, train, cfg)
        idx = list(range(min(5, len(ds))))[::-1]
        torch.manual_seed(1)
        batch = ds.get_batch(idx)
        torch.manual_seed(1)
        ref = default_collate([ds[i] for i in idx])
        assert all(torch.equal(batch[k], ref[k]) for k in ref), (name, preset, train)
