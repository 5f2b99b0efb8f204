"""``init_from_unimodal`` (ReconBoost's official CREMA-D ``--use_pretrain``, MSLR's paper): the
harness finds the unimodal reference runs of the same dataset, preset and seed through their
records and starts the run from their *selected* weights (``best.ckpt``), or refuses in one line."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.trainer import train_run
from mmbench.cli import cli
from mmbench.errors import ConfigError
from mmbench.methods.mslr import MSLR
from mmbench.methods.reconboost import ReconBoost

DATA = {"data.limit_train_per_class": 10}
MODALITIES = ("image", "fourier")


@pytest.fixture(scope="module")
def unimodal_root(tmp_path_factory):
    """Finished 2-epoch unimodal reference runs of mfeat, seed 0 (``results/mfeat/unimodal-<m>``)."""
    root = tmp_path_factory.mktemp("results")
    for m in MODALITIES:
        ucfg = resolve_config("mfeat", "unimodal", {**DATA, "epochs": 2, "method.modality": m}, tag=m, device="cpu")
        train_run(ucfg, root, progress=False)
    return root


def _selected(root, m):
    best = torch.load(root / "mfeat" / f"unimodal-{m}" / "seed-0" / "best.ckpt", weights_only=False)
    return best["rules"]["val"]


def _first_step_state(method_cls, cfg, root):
    """The model's state when the run's first training step starts."""
    seen = {}
    orig = method_cls.training_step

    def spy(self, model, batch, ctx):
        if not seen:
            seen.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        return orig(self, model, batch, ctx)

    method_cls.training_step = spy
    try:
        result = train_run(cfg, root, progress=False)
    finally:
        method_cls.training_step = orig
    return seen, result


@pytest.mark.parametrize("method_cls", [MSLR, ReconBoost], ids=["mslr", "reconboost"])
def test_init_from_unimodal_starts_from_the_selected_unimodal_weights(method_cls, unimodal_root):
    over = {**DATA, "epochs": 1, "method.init_from_unimodal": True}
    if method_cls is ReconBoost:
        over.update({"method.epochs_per_stage": 1, "method.correct_epochs": 0})
    cfg = resolve_config("mfeat", method_cls.name, over, device="cpu")
    seen, result = _first_step_state(method_cls, cfg, unimodal_root)
    for m in MODALITIES:
        sel = _selected(unimodal_root, m)
        enc = {k: v for k, v in sel["model"].items() if k.startswith(f"encoders.{m}.")}
        assert enc
        for k, v in enc.items():
            assert torch.equal(seen[k], v), k
        assert result["initialised_from"][m]["epoch"] == sel["epoch"]
        assert result["initialised_from"][m]["rule"] == "val"
        if method_cls is MSLR:  # the late-fusion head m is unimodal m's head
            for name in ("weight", "bias"):
                assert torch.equal(seen[f"heads.fc.{m}.{name}"], sel["model"][f"heads.fc.{name}"])
    if method_cls is ReconBoost:  # --use_pretrain: every learner is in the ensemble from stage 0
        assert seen["heads.members"].tolist() == [True, True]


def test_missing_unimodal_runs_are_refused_in_one_line_before_anything_is_written(tmp_path):
    cfg = resolve_config("mfeat", "reconboost", {**DATA, "epochs": 2, "method.init_from_unimodal": True}, device="cpu")
    with pytest.raises(ConfigError, match=r"unimodal-image/seed-0 \(missing\).*unimodal-fourier/seed-0 \(missing\)"):
        train_run(cfg, tmp_path, progress=False)
    assert not (tmp_path / "mfeat" / cfg.run_name).exists()
    res = CliRunner().invoke(
        cli,
        ["run", "-m", "mslr", "-d", "mfeat", "--results", str(tmp_path), "--no-progress",
         "--set", "method.init_from_unimodal=true", "--set", "epochs=1"],
    )
    assert res.exit_code == 2, res.output
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output
    assert "mmbench run -d mfeat -m unimodal --set method.modality=image --seed-start 0" in lines[0]
    assert "method.modality=fourier" in lines[0]
