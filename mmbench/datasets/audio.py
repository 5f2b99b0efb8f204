"""Audio primitives of the audio-visual datasets; no librosa, no torchaudio.

- ``read_wav``: ``soundfile.read(dtype="float32", always_2d=True)``, channels averaged (librosa
  ``mono=True``).
- ``resample``: ``scipy.signal.resample_poly`` (librosa's soxr/resampy differ slightly), given its
  own default low-pass filter, designed once per rate pair (``lowpass``): the same samples, without
  the ``firwin`` design (three quarters of a call for a short clip) on every clip.
- ``tile`` / ``double_until``: the length rules of AUG ``dataset/CREMA.py`` (``np.tile(x, k)``) and
  ``dataset/KS.py`` / BSS ``VGGSoundDataset.py`` (``while len/sr < d: x = np.tile(x, 2)``).
- ``log_spectrogram``: ``torch.stft`` with librosa's defaults as the official loaders call
  ``librosa.stft(n_fft, hop_length)``: Hann window of ``n_fft``, ``center=True``, constant padding
  (librosa >= 0.10), then ``log(|S| + 1e-7)``.
- ``kaldi_fbank``: ``torchaudio.compliance.kaldi.fbank`` as OGM-GE
  ``data/KineticSound/process_audio.py`` calls it (128 mel bins, Hann window, dither 0, 10 ms shift).
- ``load_audio``: the whole per-clip recipe driven by a preset's ``audio`` options.
"""

from __future__ import annotations

import functools
import threading
from math import gcd
from pathlib import Path

import numpy as np
import soundfile
import torch

from mmbench.results.errors import MediaError

LOG_EPS = 1e-7  # log(|S| + 1e-7), AUG/OGM-GE loaders
FBANK_MEAN, FBANK_STD = -4.503877, 5.141276  # OGM-GE process_audio.py normalisation


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the file's sample rate; a file libsndfile cannot decode raises
    ``MediaError`` naming it (the trainer fails that seed with one line)."""
    try:
        x, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError, OSError, EOFError) as exc:
        raise MediaError.of(path, exc) from None
    return x.mean(axis=1).astype(np.float32), int(sr)


def resample(x: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Polyphase resampling to ``sr_to`` (identity when the rates agree)."""
    if sr_from == sr_to or len(x) == 0:
        return x.astype(np.float32, copy=False)
    from scipy.signal import resample_poly  # here, not at import: 1 s off processes that never decode

    g = gcd(int(sr_from), int(sr_to))
    up, down = sr_to // g, sr_from // g
    return resample_poly(x, up, down, window=lowpass(up, down, np.dtype(x.dtype).str)).astype(np.float32)


@functools.lru_cache(maxsize=16)
def lowpass(up: int, down: int, dtype: str) -> np.ndarray:
    """``resample_poly``'s default filter for ``up / down`` (already reduced): ``firwin(2 * 10 *
    max(up, down) + 1, 1 / max(up, down), window=("kaiser", 5.0))`` in the signal's dtype (scipy
    copies it before scaling, so the cached array is never changed)."""
    from scipy.signal import firwin

    rate = max(up, down)
    h = firwin(2 * 10 * rate + 1, 1.0 / rate, window=("kaiser", 5.0))
    return h.astype(np.dtype(dtype) if np.dtype(dtype).kind in "fc" else np.float64)


def tile(x: np.ndarray, k: int, n: int) -> np.ndarray:
    """Repeat the whole clip ``k`` times (more while shorter than ``n``), keep the first ``n``
    samples. AUG ``dataset/CREMA.py``: ``np.tile(samples, 20)[:22050 * 20]``."""
    if len(x) == 0:
        x = np.zeros(1, dtype=np.float32)
    reps = max(int(k), 1)
    reps = max(reps, -(-n // len(x)))
    return np.tile(x, reps)[:n]


def double_until(x: np.ndarray, n: int) -> np.ndarray:
    """``x = concat(x, x)`` until ``len(x) >= n`` (an empty clip becomes one zero sample); AUG
    ``dataset/KS.py``: ``while len(sample) / rate < 10.: sample = np.tile(sample, 2)``."""
    if len(x) == 0:
        x = np.zeros(1, dtype=np.float32)
    while len(x) < n:
        x = np.concatenate([x, x])
    return x


def log_spectrogram(x: np.ndarray | torch.Tensor, n_fft: int, hop: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """``log(|STFT| + 1e-7)`` of a 1-D signal: shape ``(n_fft // 2 + 1, 1 + len // hop)``; with
    ``out`` (float32, that shape) written there in place, the same bits without a fresh tensor."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    spec = torch.stft(
        x,
        n_fft,
        hop_length=hop,
        win_length=n_fft,
        window=torch.hann_window(n_fft),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    # |S| in the STFT's own memory order (time-major: spec is a transposed view), log in place,
    # then one transposing copy into ``out``: the bits of torch.log(spec.abs() + 1e-7), measured
    # 5-25 % faster a clip (BENCHMARKS.md, 2026-12-02)
    if out is None:
        return torch.abs(spec.T).add_(LOG_EPS).log_().T
    mag = torch.abs(spec.T, out=_scratch(tuple(spec.T.shape))).add_(LOG_EPS).log_()
    return out.copy_(mag.T)


_LOCAL = threading.local()


def _scratch(shape: tuple) -> torch.Tensor:
    """A float32 buffer of ``shape`` reused by this thread (no fresh pages for every clip)."""
    buf = getattr(_LOCAL, "buf", None)
    if buf is None or tuple(buf.shape) != shape:
        buf = _LOCAL.buf = torch.empty(shape)
    return buf


def _mel(f):
    return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_banks(num_bins: int = 128, padded: int = 512, sr: int = 16000, low: float = 20.0, high: float = 8000.0):
    """Kaldi's triangular mel filters (``torchaudio.compliance.kaldi.get_mel_banks`` without VTLN),
    ``(num_bins, padded // 2 + 1)``; the Nyquist column is zero as in torchaudio."""
    n_fft_bins = padded // 2
    mel_low, mel_high = _mel(low), _mel(high)
    delta = (mel_high - mel_low) / (num_bins + 1)
    i = np.arange(num_bins)[:, None]
    left, center, right = mel_low + i * delta, mel_low + (i + 1) * delta, mel_low + (i + 2) * delta
    mel = _mel(sr / padded * np.arange(n_fft_bins))[None, :]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = np.maximum(0.0, np.minimum(up, down))
    return np.pad(banks, ((0, 0), (0, 1))).astype(np.float32)


def kaldi_fbank(
    x: np.ndarray,
    sr: int = 16000,
    num_bins: int = 128,
    frames: int = 1024,
    normalize: bool = True,
) -> torch.Tensor:
    """Kaldi fbank of OGM-GE ``data/KineticSound/process_audio.py``.

    Waveform mean removed; 25 ms frames (400 samples at 16 kHz), 10 ms shift, ``snip_edges``;
    per frame DC removal, pre-emphasis 0.97 (the first sample against itself), symmetric Hann
    window, zero-pad to 512, power spectrum, 128 mel filters over 20 Hz - 8 kHz,
    ``log(max(e, float32 eps))``; zero-pad or cut to ``frames`` rows; then
    ``(x + 4.503877) / (2 * 5.141276)`` unless ``normalize`` is false. Returns ``(frames, num_bins)``.
    """
    x = np.asarray(x, dtype=np.float32)
    x = x - x.mean() if len(x) else x
    win, shift = int(sr * 0.025), int(sr * 0.010)
    padded = 1 << (win - 1).bit_length()
    n = 1 + (len(x) - win) // shift if len(x) >= win else 0
    eps = float(np.finfo(np.float32).eps)
    if n > 0:
        t = torch.from_numpy(x)
        strided = t.unfold(0, win, shift)[:n].double()
        strided = strided - strided.mean(dim=1, keepdim=True)
        prev = torch.cat([strided[:, :1], strided[:, :-1]], dim=1)
        strided = strided - 0.97 * prev
        strided = strided * torch.hann_window(win, periodic=False, dtype=torch.float64)
        power = torch.fft.rfft(strided, n=padded).abs().pow(2)
        banks = torch.from_numpy(mel_banks(num_bins, padded, sr)).double()
        feats = torch.log(torch.clamp(power @ banks.T, min=eps)).float()
    else:
        feats = torch.zeros(0, num_bins)
    if feats.shape[0] < frames:
        feats = torch.nn.functional.pad(feats, (0, 0, 0, frames - feats.shape[0]))
    feats = feats[:frames]
    if normalize:
        feats = (feats - FBANK_MEAN) / (2 * FBANK_STD)
    return feats


def clip_samples(opts: dict) -> int:
    """Number of samples the clip is cut to (``seconds`` at ``sample_rate``)."""
    return round(float(opts["seconds"]) * int(opts["sample_rate"]))


def waveform(x: np.ndarray, sr: int, opts: dict, train: bool, start_rng: np.random.Generator | None) -> np.ndarray:
    """Resample, lengthen (``repeat``: ``tile`` / ``double``), pick the start and cut, clip to [-1, 1]."""
    rate = int(opts["sample_rate"])
    x = resample(x, sr, rate)
    if opts["repeat"] == "none":  # the fbank recipe: the whole clip, padded or cut in frames later
        return x
    n = clip_samples(opts)
    if opts["repeat"] == "tile":
        x = tile(x, int(opts.get("tile", 1)), n)
    elif opts["repeat"] == "double":
        need = max(n, round(float(opts.get("min_seconds", 0.0)) * rate))
        x = double_until(x, need)
    else:
        raise ValueError(f"unknown audio.repeat {opts['repeat']!r}; choose tile, double or none")
    start = 0
    if opts.get("start", "first") == "random":
        max_start = int(opts.get("max_start", 0))
        if not train and opts.get("test_crop", "random") == "center":
            start = max_start // 2
        else:
            rng = start_rng if start_rng is not None else np.random.default_rng()
            start = int(rng.integers(0, max_start + 1))  # inclusive, as random.randint
    out = x[start : start + n]
    if len(out) < n:
        out = np.pad(out, (0, n - len(out)))
    return np.clip(out, -1.0, 1.0)


def is_deterministic(opts: dict) -> bool:
    """True when the clip of a sample never depends on randomness (cacheable)."""
    return opts.get("start", "first") != "random"


def features(x: np.ndarray, opts: dict, fbank_opts: dict | None, out: torch.Tensor | None = None) -> torch.Tensor:
    """Spectrogram item ``(1, F, T)`` of a prepared waveform at ``opts["sample_rate"]``; with
    ``out`` (a ``(1, F, T)`` float32 slot of a batch) the item is written there and returned."""
    if out is not None and opts.get("features", "stft") != "fbank":
        log_spectrogram(x, int(opts["n_fft"]), int(opts["hop"]), out=out[0])
        return out
    if opts.get("features", "stft") == "fbank":
        f = fbank_opts or {}
        feats = kaldi_fbank(
            x,
            int(opts["sample_rate"]),
            int(f.get("mel_bins", 128)),
            int(f.get("frames", 1024)),
            bool(f.get("normalize", True)),
        )
    else:
        feats = log_spectrogram(x, int(opts["n_fft"]), int(opts["hop"]))
    feats = feats.unsqueeze(0).float()
    return feats if out is None else out.copy_(feats)


def load_audio(
    path: str | Path,
    opts: dict,
    fbank_opts: dict | None = None,
    train: bool = False,
    start_rng: np.random.Generator | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Read a wav and apply a preset's ``audio`` options; returns ``(1, F, T)`` float32 (written
    into ``out`` when given: see ``features``)."""
    x, sr = read_wav(path)
    return features(waveform(x, sr, opts, train, start_rng), opts, fbank_opts, out)


def item_shape(opts: dict, fbank_opts: dict | None = None) -> tuple[int, int, int]:
    """The ``(1, F, T)`` shape ``load_audio`` produces for these options."""
    if opts.get("features", "stft") == "fbank":
        f = fbank_opts or {}
        return (1, int(f.get("frames", 1024)), int(f.get("mel_bins", 128)))
    n_fft, hop = int(opts["n_fft"]), int(opts["hop"])
    return (1, n_fft // 2 + 1, 1 + clip_samples(opts) // hop)


def load_precomputed(path: str | Path) -> torch.Tensor:
    """A precomputed spectrogram (``.pkl``, ``.npy`` or ``.pt``), ``(F, T)`` or ``(1, F, T)``, as is."""
    import pickle

    path = Path(path)
    try:
        if path.suffix == ".npy":
            arr = np.load(path)
        elif path.suffix == ".pt":
            arr = torch.load(path, map_location="cpu", weights_only=True)
        else:
            with open(path, "rb") as fh:
                arr = pickle.load(fh)
    except (OSError, ValueError, EOFError, RuntimeError, pickle.UnpicklingError) as exc:
        raise MediaError.of(path, exc) from None
    t = torch.as_tensor(np.asarray(arr), dtype=torch.float32)
    if t.dim() == 2:
        t = t.unsqueeze(0)
    if t.dim() != 3 or t.shape[0] != 1:
        raise ValueError(f"{path}: expected (F, T) or (1, F, T), got {tuple(t.shape)}")
    return t


def riff_truncation(path: str | Path) -> tuple[int, int] | None:
    """``(declared, present)`` bytes of a RIFF/WAVE ``data`` chunk cut short, else None.

    libsndfile silently clamps a truncated ``data`` chunk to the bytes present, so a cut file
    reads without error; the header still declares the original size."""
    import struct

    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            cid, csize = struct.unpack("<4sI", fh.read(8))
            if cid == b"data":
                present = size - pos - 8
                if csize != 0xFFFFFFFF and csize > present:
                    return csize, present
                return None
            pos += 8 + csize + (csize & 1)
    return None


def wav_problem(path: str | Path) -> str | None:
    """Why a wav cannot be used (unreadable, empty, truncated), or None."""
    try:
        cut = riff_truncation(path)
        if cut is not None:
            return f"{path}: truncated wav (data chunk declares {cut[0]} bytes, {cut[1]} present)"
        info = soundfile.info(str(path))
        if info.frames <= 0 or info.samplerate <= 0 or info.channels <= 0:
            return f"{path}: empty audio ({info.frames} frames, {info.samplerate} Hz, {info.channels} ch)"
        x, _ = soundfile.read(str(path), dtype="float32", always_2d=True)
        if len(x) < info.frames:
            return f"{path}: truncated ({len(x)} of {info.frames} frames)"
        if not np.isfinite(x).all():
            return f"{path}: non-finite samples"
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a finding
        return f"{path}: unreadable wav ({type(exc).__name__}: {str(exc).strip() or 'decode failed'})"
    return None


__all__ = [
    "double_until",
    "features",
    "is_deterministic",
    "item_shape",
    "kaldi_fbank",
    "load_audio",
    "load_precomputed",
    "log_spectrogram",
    "mel_banks",
    "read_wav",
    "resample",
    "tile",
    "wav_problem",
    "waveform",
]
