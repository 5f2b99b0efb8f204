"""Teachers from the unimodal reference runs (``Method.needs_unimodal_teachers``): the lookup is
mandatory, runs on every start and resume, hands the method frozen eval-mode copies of the
encoders with the references' selected weights, records ``teachers_from``, and refuses a missing
reference (one line, nothing written) or one that changed under a resumed run."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from mmbench.benchmark import registry, store
from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.trainer import Interrupted, train_run
from mmbench.benchmark.unimodal_init import frozen_teachers, selected_weights
from mmbench.cli import cli
from mmbench.errors import ConfigError
from mmbench.methods.joint import Joint

DATA = {"data.limit_train_per_class": 5, "epochs": 2}
MODALITIES = ("image", "fourier")


class _TeacherProbe(Joint):
    """Joint training that keeps what the harness hands it (not registered outside the tests)."""

    name = "test_teacher_probe"
    needs_unimodal_teachers = True
    calls: list = []

    def set_teachers(self, teachers):
        type(self).calls.append(teachers)
        self.teachers = teachers


@pytest.fixture
def probe():
    _TeacherProbe.calls = []
    with registry.registered_method(_TeacherProbe):
        yield _TeacherProbe


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Finished unimodal reference runs of mfeat, seed 0, named as `mmbench run` names them."""
    root = tmp_path_factory.mktemp("results")
    for m in MODALITIES:
        train_run(
            resolve_config("mfeat", "unimodal", {**DATA, "method.modality": m}, tag=m, device="cpu"),
            root,
            progress=False,
        )
    return root


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_missing_reference_runs_are_refused_in_one_line_before_anything_is_written(tmp_path, probe):
    cfg = resolve_config("mfeat", probe.name, DATA, device="cpu")
    with pytest.raises(
        ConfigError,
        match=r"needs its teachers, the unimodal reference runs .*unimodal-image/seed-0 "
        r"\(missing\).*mmbench run -d mfeat -m unimodal --set method.modality=image",
    ):
        train_run(cfg, tmp_path, progress=False)
    assert not (tmp_path / "mfeat").exists()
    res = CliRunner().invoke(
        cli,
        [
            "run",
            "-m",
            probe.name,
            "-d",
            "mfeat",
            "--results",
            str(tmp_path),
            "--no-progress",
            "--set",
            "epochs=1",
        ],
    )
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "Traceback" not in res.output, res.output
    assert "--set method.modality=fourier" in lines[0]
    assert not (tmp_path / "mfeat").exists()


@pytest.mark.slow
def test_teachers_are_frozen_eval_copies_of_the_selected_weights_outside_the_model(
    tmp_path, probe, references
):
    root = _copy(references, tmp_path / "r")
    cfg = resolve_config("mfeat", probe.name, DATA, device="cpu")
    result = train_run(cfg, root, progress=False)
    (teachers,) = probe.calls
    assert set(teachers) == set(MODALITIES)
    ckpt = torch.load(store.run_dir(root, "mfeat", cfg.run_name, 0) / store.CHECKPOINT, weights_only=False)
    for m in MODALITIES:
        ref = store.run_dir(root, "mfeat", f"unimodal-{m}", 0)
        best = torch.load(ref / store.BEST, weights_only=False)["rules"]["val"]
        t = teachers[m]
        assert not t.training and all(not p.requires_grad for p in t.parameters())
        for k, v in t.state_dict().items():
            assert torch.equal(v, best["model"][f"encoders.{m}.{k}"]), k
        assert not any(k.startswith("teacher") for k in ckpt["model"])  # never in the model
        rec = result["teachers_from"][m]
        assert rec["run"] == str(ref) and rec["epoch"] == best["epoch"] and rec["rule"] == "val"
        assert rec["identity"] == store.read_json(ref / store.RESULT)["identity"]["hash"]
    assert "initialised_from" not in result  # teachers do not initialise the student
    assert ckpt["teachers_from"] == result["teachers_from"]


@pytest.mark.slow
def test_teachers_are_handed_over_again_on_resume_and_the_run_equals_an_uninterrupted_one(
    tmp_path, probe, references
):
    cfg = resolve_config("mfeat", probe.name, DATA, device="cpu")
    whole = train_run(cfg, _copy(references, tmp_path / "a"), progress=False)
    root = _copy(references, tmp_path / "c")
    with pytest.raises(Interrupted):
        train_run(cfg, root, progress=False, stop_after_epochs=1)
    resumed = train_run(cfg, root, progress=False)
    assert len(probe.calls) == 3  # whole run, first start, resume
    assert resumed["selection"] == whole["selection"]
    assert {m: r["epoch"] for m, r in resumed["teachers_from"].items()} == {
        m: r["epoch"] for m, r in whole["teachers_from"].items()
    }


@pytest.mark.slow
def test_a_resume_whose_teachers_changed_is_refused(tmp_path, probe, references):
    root = _copy(references, tmp_path / "r")
    cfg = resolve_config("mfeat", probe.name, DATA, device="cpu")
    with pytest.raises(Interrupted):
        train_run(cfg, root, progress=False, stop_after_epochs=1)
    path = store.run_dir(root, "mfeat", cfg.run_name, 0) / store.CHECKPOINT
    ckpt = torch.load(path, weights_only=False)
    ckpt["teachers_from"]["fourier"]["epoch"] = 99  # as if unimodal-fourier had been retrained since
    torch.save(ckpt, path)
    with pytest.raises(ConfigError, match="the fourier teacher changed since this run started"):
        train_run(cfg, root, progress=False)


@pytest.mark.slow
def test_the_reference_under_the_same_settings_is_found_as_a_suite_names_it(tmp_path, probe):
    """A suite listing `unimodal` next to the method names the references by their overrides
    (`unimodal-image_epochs2_limit_train_per_class5`); they are found without a suffix."""
    for m in MODALITIES:
        train_run(
            resolve_config("mfeat", "unimodal", {**DATA, "method.modality": m}, device="cpu"),
            tmp_path,
            progress=False,
        )
    assert (tmp_path / "mfeat" / "unimodal-image_epochs2_limit_train_per_class5").is_dir()
    result = train_run(resolve_config("mfeat", probe.name, DATA, device="cpu"), tmp_path, progress=False)
    assert result["teachers_from"]["image"]["run"].endswith(
        "unimodal-image_epochs2_limit_train_per_class5/seed-0"
    )


def test_building_teachers_draws_no_random_numbers_of_the_run(references):
    cfg = resolve_config("mfeat", "joint", DATA, device="cpu")
    spec = registry.get_dataset("mfeat")
    runs = {m: store.run_dir(references, "mfeat", f"unimodal-{m}", 0) for m in MODALITIES}
    weights, _ = selected_weights(runs, None)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    teachers = frozen_teachers(spec, cfg, weights, "cpu")
    assert torch.equal(torch.get_rng_state(), before)
    assert set(teachers) == set(MODALITIES)
