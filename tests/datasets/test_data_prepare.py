"""``mmbench data prepare``: raw downloads (flv/mp4/avi written with PyAV, wavs, csv/lst/tsv)
-> the loader's tree -> ``data check`` passes -> a smoke run trains, for every paper dataset;
bad videos are named and skipped; reruns resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from mmbench.cli import cli
from mmbench.datasets.raw_fixtures import write_raw

DATASETS = ("cremad", "kinetics_sounds", "vggsound", "nvgesture", "twitter15", "sarcasm")
EXTRA = {"nvgesture": ["--flow-size", "20"]}  # the smoke preset's data.nvgesture.size


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def prepare(dataset, raw, out, *extra):
    return invoke("data", "prepare", dataset, "--from", raw, "--out", out, "--no-progress",
                  *EXTRA.get(dataset, []), *extra)


@pytest.fixture(scope="module")
def raw_trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("raw")
    return {d: write_raw(d, base / d, n_per_class=1) for d in DATASETS}


@pytest.fixture(scope="module")
def prepared_nvgesture(raw_trees, tmp_path_factory):
    """NVGesture prepared once (optical flow for every clip) for the two tests that read it."""
    out = tmp_path_factory.mktemp("nv_prepared") / "root"
    return out, prepare("nvgesture", raw_trees["nvgesture"], out, "--jobs", "1")


@pytest.mark.slow
@pytest.mark.parametrize("dataset", DATASETS)
def test_raw_download_prepares_checks_and_trains(dataset, raw_trees, tmp_path, request):
    if dataset == "nvgesture":
        out, res = request.getfixturevalue("prepared_nvgesture")
    else:
        out = tmp_path / "root"
        res = prepare(dataset, raw_trees[dataset], out, "--jobs", "2" if dataset == "cremad" else "1")
    assert res.exit_code == 0, res.output
    assert "0 skipped" in res.output
    record = json.loads((out / "mmbench-prepare.json").read_text())
    assert record["clips"]["failed"] == 0 and record["clips"]["usable"] > 0
    check = invoke("data", "check", dataset, "--root", out, "--preset", "smoke")
    assert check.exit_code == 0, check.output
    if dataset == "nvgesture":  # three full I3Ds train for minutes on CPU: test_nvgesture.py trains this
        _assert_nvgesture_items(out)  # loader path (frame folders + flow .npy); here its items build
        return
    args = ["run", "-m", "joint", "-d", dataset, "--root", out, "--results", tmp_path / "results", "--no-progress",
            "--device", "cpu", "--set", "data.preset=smoke", "--set", "batch_size=8"]
    if dataset != "cremad":  # cremad shows the smoke budget (at most 2 of its 200 epochs); the others take 1
        args += ["--set", "epochs=1"]
    run = invoke(*args)
    assert run.exit_code == 0, run.output
    history = list((tmp_path / "results").glob(f"{dataset}/*/seed-0/history.jsonl"))[0].read_text().splitlines()
    assert 1 <= len(history) <= 2  # smoke caps the dataset's epoch budget (200 for CREMA-D)


def _assert_nvgesture_items(root):
    from mmbench.benchmark.config import resolve_config
    from mmbench.benchmark.registry import get_dataset

    cfg = resolve_config("nvgesture", "joint", {"data.preset": "smoke"}).data
    for split, train in (("train", True), ("test", False)):
        item = get_dataset("nvgesture").build(split, root, train, cfg)[0]
        frames = 16 if train else 80
        assert item["rgb"].shape == (3, frames, 16, 16) and item["depth"].shape == (1, frames, 16, 16)
        assert item["of"].shape == (2, 80, 16, 16) and item["rgb"].std() > 0


def test_cremad_frames_follow_the_ogm_ge_extractor_and_a_seeded_split_is_recorded(raw_trees, tmp_path):
    import av

    raw, out = raw_trees["cremad"], tmp_path / "c"
    assert prepare("cremad", raw, out, "--split-seed", "3").exit_code == 0
    sid = sorted(p.stem for p in (raw / "VideoFlash").glob("*.flv"))[0]
    with av.open(str(raw / "VideoFlash" / f"{sid}.flv")) as c:
        n = sum(1 for _ in c.decode(video=0))
    names = sorted(p.name for p in (out / "Image-01-FPS" / sid).iterdir())
    assert names == [f"{i:05d}.jpg" for i in range(0, n, 30)]  # 30 fps: frames 0, 30, 60, ...
    assert (out / "AudioWAV" / f"{sid}.wav").read_bytes() == (raw / "AudioWAV" / f"{sid}.wav").read_bytes()
    record = json.loads((out / "mmbench-prepare.json").read_text())
    assert record["split"] == "stratified" and record["split_seed"] == 3
    train = (out / "train.csv").read_text().split()
    test = (out / "test.csv").read_text().split()
    assert len(train) + len(test) == record["clips"]["usable"] and not set(train) & set(test)
    assert {line.split(",")[1] for line in test} == {"NEU", "HAP", "SAD", "FEA", "DIS", "ANG"}


def test_cremad_uses_the_split_lists_given(raw_trees, tmp_path):
    raw = raw_trees["cremad"]
    ids = sorted(p.stem for p in (raw / "VideoFlash").glob("*.flv"))
    (tmp_path / "train.csv").write_text("".join(f"{i},{i.split('_')[2]}\n" for i in ids[::2]))
    (tmp_path / "test.csv").write_text("name,label\n" + "".join(f"{i},{i.split('_')[2]}\n" for i in ids[1::2]))
    out = tmp_path / "c"
    res = prepare("cremad", raw, out, "--split", tmp_path / "train.csv", "--split", tmp_path / "test.csv")
    assert res.exit_code == 0, res.output
    assert [line.split(",")[0] for line in (out / "test.csv").read_text().split()] == ids[1::2]


def test_a_truncated_video_is_named_skipped_listed_and_a_rerun_resumes(raw_trees, tmp_path):
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(raw_trees["kinetics_sounds"], raw)
    bad = sorted(raw.rglob("*.mp4"))[0]
    bad.write_bytes(bad.read_bytes()[:300])
    out = tmp_path / "ks"
    res = prepare("kinetics_sounds", raw, out)
    assert res.exit_code == 0, res.output
    assert str(bad) in res.output and "1 skipped" in res.output
    record = json.loads((out / "mmbench-prepare.json").read_text())
    assert list(record["failed"]) == [bad.stem] and str(bad) in record["failed"][bad.stem]
    listed = (out / "my_train.txt").read_text() + (out / "my_test.txt").read_text()
    assert bad.stem not in listed
    assert invoke("data", "check", "kinetics_sounds", "--root", out).exit_code == 0
    again = prepare("kinetics_sounds", raw, out)
    usable = record["clips"]["usable"]
    assert again.exit_code == 0 and f"{usable} usable ({usable} already done)" in again.output


def test_nothing_usable_exits_non_zero_with_one_line(tmp_path):
    raw = write_raw("vggsound", tmp_path / "raw", n_per_class=1)
    for p in raw.rglob("*.mp4"):
        p.write_bytes(b"not a video")
    res = prepare("vggsound", raw, tmp_path / "out")
    assert res.exit_code == 2 and "nothing usable" in res.output


def test_nvgesture_flow_is_recorded_and_shaped_for_the_loader(prepared_nvgesture):
    out, res = prepared_nvgesture
    assert res.exit_code == 0, res.output
    record = json.loads((out / "mmbench-prepare.json").read_text())
    assert record["flow"]["algorithm"] == "farneback" and record["flow"]["bound"] == 20.0
    flow = np.load(out / "Video_data" / "flow_data" / "train" / "0.npy")
    assert flow.dtype == np.float32 and flow.shape == (20, 20, 2, 80)
    assert np.abs(flow).max() <= 1.0 and np.abs(flow).max() > 0  # the fixture's bar moves 2 px a frame


def test_a_truncated_wav_and_a_corrupt_jpg_fail_the_default_check_by_name(tmp_path):
    root = tmp_path / "c"
    assert invoke("data", "fixture", "cremad", "--out", root).exit_code == 0
    wav = sorted((root / "AudioWAV").glob("*.wav"))[-1]  # the last: a sample of 20 could miss it
    wav.write_bytes(wav.read_bytes()[:3000])
    jpg = sorted((root / "Image-01-FPS").rglob("*.jpg"))[-1]
    jpg.write_bytes(jpg.read_bytes()[:200])
    res = invoke("data", "check", "cremad", "--root", root)
    assert res.exit_code == 1
    assert str(wav) in res.output and str(jpg) in res.output


def test_media_check_remembers_verified_files_and_rechecks_changed_ones(tmp_path, monkeypatch):
    from mmbench.datasets import media_check

    rng = np.random.default_rng(0)
    files = []
    for i in range(3):
        p = tmp_path / f"{i}.wav"
        soundfile.write(str(p), rng.standard_normal(800).astype(np.float32) * 0.1, 16000, subtype="PCM_16")
        files.append((p, "wav"))
    calls = []
    real = media_check._decoders

    def counting():
        return {k: (lambda p, f=f: calls.append(p) or f(p)) for k, f in real().items()}

    monkeypatch.setattr(media_check, "_decoders", counting)
    assert media_check.verify(files, tmp_path) == {} and len(calls) == 3
    assert media_check.verify(files, tmp_path) == {} and len(calls) == 3  # memoised: nothing opened
    files[1][0].write_bytes(files[1][0].read_bytes()[:100])  # changed size: decoded again, and fails
    failed = media_check.verify(files, tmp_path)
    assert list(failed) == [files[1][0]] and len(calls) == 4
    assert list(media_check.verify(files, tmp_path)) == [files[1][0]]  # failures are never remembered


@pytest.mark.parametrize("dataset", ["nvgesture", "cremad"])
def test_a_fixture_passes_data_check_with_no_options(dataset, tmp_path):
    root = tmp_path / dataset
    wrote = invoke("data", "fixture", dataset, "--out", root)
    assert wrote.exit_code == 0 and "data.preset=smoke" in wrote.output
    res = invoke("data", "check", dataset, "--root", root)
    assert res.exit_code == 0, res.output
    assert sum(line.startswith("warn:") for line in res.output.splitlines()) <= 2  # counts fold into one line


def test_builtin_name_tables_match_what_the_modules_register():
    import importlib
    import pkgutil

    import mmbench.datasets
    import mmbench.methods
    from mmbench.benchmark import registry

    for pkg in (mmbench.methods, mmbench.datasets):
        for info in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{pkg.__name__}.{info.name}")
    builtin_methods = registry.METHODS.builtin_names()
    assert builtin_methods == sorted(registry.BUILTIN_METHODS)
    assert {n: registry.get_method(n).__module__ for n in builtin_methods} == registry.BUILTIN_METHODS
    builtin_datasets = registry.DATASETS.builtin_names()
    assert builtin_datasets == sorted(registry.BUILTIN_DATASETS)
    assert {n: type(registry.get_dataset(n)).__module__ for n in builtin_datasets} == registry.BUILTIN_DATASETS


def test_a_name_typo_is_refused_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom mmbench.cli import cli\n"
            "from click.testing import CliRunner\n"
            "r = CliRunner().invoke(cli, ['run', '-m', 'nosuch', '-d', 'mfeat'])\n"
            "assert r.exit_code == 2 and \"unknown method 'nosuch'\" in r.output, r.output\n"
            "r = CliRunner().invoke(cli, ['--help'])\n"
            "assert r.exit_code == 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_smoke_preset_caps_the_epoch_budget_unless_epochs_is_given():
    from mmbench.benchmark.config import resolve_config

    assert resolve_config("cremad", "joint", {"data.preset": "smoke"}).train.epochs == 2
    assert resolve_config("cremad", "joint", {"data.preset": "smoke", "epochs": 7}).train.epochs == 7
    assert resolve_config("cremad", "joint", {}).train.epochs == 200


def test_list_methods_shows_a_summary_and_the_paper_and_no_spec_links():
    out = invoke("list", "methods").output
    assert "specs/" not in out and '"Balanced Multimodal Learning via On-the-fly Gradient Modulation", CVPR 2022' in out
    assert all(len(line) < 250 for line in out.splitlines())


def test_tvl1_flow_without_opencv_contrib_is_refused_in_one_line_before_any_work(raw_trees, tmp_path):
    import cv2

    if hasattr(cv2, "optflow"):
        pytest.skip("opencv-contrib is installed: tvl1 is available")
    out = tmp_path / "nv"
    res = prepare("nvgesture", raw_trees["nvgesture"], out, "--flow", "tvl1")
    assert res.exit_code == 2 and "opencv-contrib-python-headless" in res.output
    assert not (out / "Video_data").exists()
