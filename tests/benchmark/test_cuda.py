"""GPU smoke tests: skipped without CUDA; scripts/gpu_check.sh runs them on a GPU machine."""

import pytest
import torch

from mmbench.benchmark.config import parse_overrides, resolve_config
from mmbench.benchmark.registry import method_names
from mmbench.benchmark.trainer import Interrupted, train_run

from conftest import TINY

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _cfg(method, extra=()):
    overrides = parse_overrides([*TINY, *extra])
    if method == "unimodal":
        overrides["method.modality"] = "fourier"
    return resolve_config("mfeat", method, overrides, device="cuda")


@pytest.mark.parametrize("method", method_names())
def test_every_method_trains_on_cuda_with_bf16_autocast(method, tmp_path):
    cfg = _cfg(method)
    assert cfg.train.amp == "auto"
    result = train_run(cfg, tmp_path, progress=False)
    assert result["status"] == "finished"
    assert 0.0 <= result["selection"]["val"]["test"]["fusion"]["acc"] <= 1.0


def test_cuda_resume_matches_uninterrupted_run_in_fp32(tmp_path):
    extra = ["epochs=3", "amp=off"]
    full = train_run(_cfg("joint", extra), tmp_path / "a", progress=False)
    with pytest.raises(Interrupted):
        train_run(_cfg("joint", extra), tmp_path / "b", progress=False, stop_after_epochs=1)
    resumed = train_run(_cfg("joint", extra), tmp_path / "b", progress=False)
    for rule in ("val", "last"):
        a = full["selection"][rule]["test"]["fusion"]["acc"]
        b = resumed["selection"][rule]["test"]["fusion"]["acc"]
        assert abs(a - b) < 0.01  # cuDNN kernels may differ in the last bits
