"""Audio and frame primitives of the audio-visual datasets (specs/datasets.md §1.4-1.6)."""

import numpy as np
import pytest
import soundfile
import torch

from mmbench.datasets import audio as A
from mmbench.datasets import frames as Fr


def _numpy_log_stft(x, n_fft, hop):
    """Independent reference: zero-pad n_fft/2 both sides, periodic Hann, rfft per frame."""
    xp = np.pad(x.astype(np.float64), (n_fft // 2, n_fft // 2))
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    n = 1 + (len(xp) - n_fft) // hop
    frames = np.stack([xp[i * hop : i * hop + n_fft] * win for i in range(n)], axis=1)
    return np.log(np.abs(np.fft.rfft(frames, axis=0)) + 1e-7)


def test_stft_matches_numpy_reference_and_shape_formula():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 5000).astype(np.float32)
    out = A.log_spectrogram(x, 512, 353)
    assert out.shape == (257, 1 + 5000 // 353)
    ref = _numpy_log_stft(x, 512, 353)
    # log of tiny magnitudes amplifies float32 rounding; compare where |S| is not negligible
    mask = ref > -5
    assert np.allclose(out.numpy()[mask], ref[mask], atol=1e-3)


@pytest.mark.parametrize(
    "opts, shape",
    [
        ({"sample_rate": 22050, "repeat": "tile", "tile": 20, "seconds": 20.0, "n_fft": 512, "hop": 353}, (1, 257, 1250)),
        ({"sample_rate": 22050, "repeat": "tile", "tile": 3, "seconds": 3.0, "n_fft": 512, "hop": 353}, (1, 257, 188)),
        ({"sample_rate": 35400, "repeat": "double", "min_seconds": 10.0, "seconds": 10.0, "n_fft": 512, "hop": 353},
         (1, 257, 1003)),
        ({"sample_rate": 35400, "repeat": "double", "min_seconds": 20.0, "seconds": 20.0, "n_fft": 512, "hop": 353},
         (1, 257, 2006)),
        ({"sample_rate": 16000, "repeat": "double", "min_seconds": 10.0, "seconds": 5.0, "start": "random",
          "max_start": 80000, "n_fft": 256, "hop": 128}, (1, 129, 626)),
    ],
)
def test_paper_and_ogm_audio_items_have_spec_shapes(tmp_path, opts, shape):
    path = tmp_path / "a.wav"
    soundfile.write(str(path), np.random.default_rng(1).uniform(-0.5, 0.5, 24000).astype(np.float32), 16000,
                    subtype="PCM_16")
    out = A.load_audio(path, dict(opts, features="stft"), train=True, start_rng=np.random.default_rng(0))
    assert tuple(out.shape) == shape == A.item_shape(opts)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_tile_repeats_whole_clip_and_double_until_reaches_length():
    x = np.arange(1, 4, dtype=np.float32)  # 1 2 3
    assert A.tile(x, 2, 5).tolist() == [1, 2, 3, 1, 2]
    assert A.tile(x, 1, 7).tolist() == [1, 2, 3, 1, 2, 3, 1]  # more while too short
    assert A.double_until(x, 7).tolist() == [1, 2, 3] * 4
    assert A.double_until(np.zeros(0, np.float32), 4).tolist() == [0, 0, 0, 0]


def test_waveform_clips_to_unit_range_and_center_test_crop():
    x = np.linspace(-3, 3, 100, dtype=np.float32)
    opts = {"sample_rate": 100, "repeat": "tile", "tile": 1, "seconds": 1.0}
    out = A.waveform(x, 100, opts, False, None)
    assert out.min() == -1 and out.max() == 1
    opts = {"sample_rate": 10, "repeat": "double", "min_seconds": 2, "seconds": 1, "start": "random", "max_start": 10,
            "test_crop": "center"}
    y = np.arange(20, dtype=np.float32) / 100
    assert A.waveform(y, 10, opts, False, None).tolist() == pytest.approx((np.arange(5, 15) / 100).tolist())


def test_resample_poly_changes_rate():
    x = np.sin(np.arange(16000) / 10).astype(np.float32)
    assert len(A.resample(x, 16000, 22050)) == 22050
    assert len(A.resample(x, 16000, 35400)) == 35400


def _fbank_reference(x, sr=16000):
    """Kaldi fbank written frame by frame from the recipe (no shared code)."""
    x = x.astype(np.float64) - x.mean()
    n = 1 + (len(x) - 400) // 160
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 399)
    def mel(f):
        return 1127 * np.log(1 + f / 700)
    lo, hi = mel(20), mel(8000)
    d = (hi - lo) / 129
    out = []
    for i in range(n):
        f = x[i * 160 : i * 160 + 400].copy()
        f -= f.mean()
        f = f - 0.97 * np.concatenate([[f[0]], f[:-1]])
        p = np.abs(np.fft.rfft(f * win, 512)) ** 2
        row = []
        for b in range(128):
            l_, c, r = lo + b * d, lo + (b + 1) * d, lo + (b + 2) * d
            e = 0.0
            for k in range(256):
                m = mel(k * sr / 512)
                if l_ < m < r:
                    e += p[k] * ((m - l_) / (c - l_) if m <= c else (r - m) / (r - c))
            row.append(np.log(max(e, np.finfo(np.float32).eps)))
        out.append(row)
    return np.array(out)


def test_kaldi_fbank_matches_frame_by_frame_reference():
    rng = np.random.default_rng(0)
    x = (0.3 * np.sin(np.arange(1200) / 7) + 0.05 * rng.standard_normal(1200)).astype(np.float32)
    ours = A.kaldi_fbank(x, 16000, 128, frames=6, normalize=False).numpy()
    ref = _fbank_reference(x)
    assert ref.shape == (6, 128)
    assert np.allclose(ours, ref, atol=1e-3)
    norm = A.kaldi_fbank(x, 16000, 128, frames=1024).numpy()
    assert norm.shape == (1024, 128)
    assert np.allclose(norm[:6], (ref + 4.503877) / (2 * 5.141276), atol=1e-3)
    assert np.allclose(norm[6:], 4.503877 / (2 * 5.141276))  # zero-padded frames, normalised


def test_truncated_and_garbage_wavs_are_reported(tmp_path):
    good = tmp_path / "good.wav"
    soundfile.write(str(good), np.zeros(8000, np.float32), 16000, subtype="PCM_16")
    assert A.wav_problem(good) is None
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[:3000])
    assert "truncated" in A.wav_problem(cut)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not a wav at all")
    assert "unreadable" in A.wav_problem(junk)


def test_frames_sort_naturally():
    names = ["frame_10.jpg", "frame_2.jpg", "frame_1.jpg", "frame_1_120.jpg", "frame_1_30.jpg"]
    assert sorted(names, key=Fr.natural_key) == [
        "frame_1.jpg", "frame_1_30.jpg", "frame_1_120.jpg", "frame_2.jpg", "frame_10.jpg"]
    assert sorted(["00060.jpg", "00000.jpg", "00030.jpg"], key=Fr.natural_key) == ["00000.jpg", "00030.jpg",
                                                                                   "00060.jpg"]


def test_segment_sampling_bounds_middles_and_train_draws():
    a, b = Fr.segment_bounds(10, 3)
    assert a.tolist() == [0, 3, 6] and b.tolist() == [3, 6, 10]
    assert Fr.segment_indices(10, 3, train=False) == [1, 4, 8]
    assert Fr.segment_indices(2, 3, train=False) == [0, 0, 1]  # frames repeat when n < T
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        idx = Fr.segment_indices(10, 3, train=True, generator=g)
        assert all(lo <= i < hi for i, lo, hi in zip(idx, [0, 3, 6], [3, 6, 10]))
    assert Fr.first_indices(2, 3) == [0, 1, 1]
    assert Fr.first_indices(5, 3) == [0, 1, 2]
