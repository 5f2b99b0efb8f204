"""The decode path's speed-ups keep its tensors: the cached resampling filter gives
scipy.signal.resample_poly's samples bit for bit."""

from __future__ import annotations

from math import gcd

import numpy as np
import pytest
from scipy.signal import resample_poly

from mmbench.datasets.audio import resample


@pytest.mark.parametrize("sr_from,sr_to", [(16000, 22050), (44100, 22050), (48000, 16000), (8000, 11025)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resample_equals_resample_poly_with_its_default_filter(sr_from, sr_to, dtype):
    x = np.random.default_rng(0).standard_normal(sr_from // 4).astype(dtype)
    g = gcd(sr_from, sr_to)
    want = resample_poly(x, sr_to // g, sr_from // g).astype(np.float32)
    for _ in range(2):  # the second call uses the cached filter
        got = resample(x, sr_from, sr_to)
        assert got.dtype == np.float32 and np.array_equal(got, want)
