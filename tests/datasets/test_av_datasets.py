"""cremad, kinetics_sounds and vggsound loaders on fixtures in the real on-disk formats
(specs/datasets.md §1-4, §9, §10)."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.registry import get_dataset
from mmbench.cli import cli
from mmbench.datasets.base import stratified_carve
from mmbench.datasets.fixtures import KS_CLASSES, KS_USED, VGG_CLASSES, VGG_USED, write_fixture


def data_cfg(dataset, **sets):
    return resolve_config(dataset, "joint", {f"data.{k}": v for k, v in sets.items()}).data


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("av")
    out = {}
    for name, layout in [("cremad", "ogm"), ("cremad", "njustkmg"), ("kinetics_sounds", "ogm"),
                         ("kinetics_sounds", "njustkmg"), ("kinetics_sounds", "njustkmg_noclasses"),
                         ("vggsound", "ogm"), ("vggsound", "bss")]:
        out[(name, layout)] = write_fixture(name, base / f"{name}-{layout}", layout)
    return out


def errors(problems):
    return [p.message for p in problems if p.level == "error"]


@pytest.mark.parametrize("key", [("cremad", "ogm"), ("cremad", "njustkmg"), ("kinetics_sounds", "ogm"),
                                 ("kinetics_sounds", "njustkmg"), ("kinetics_sounds", "njustkmg_noclasses"),
                                 ("vggsound", "ogm"), ("vggsound", "bss")])
def test_every_fixture_layout_passes_check_and_splits(trees, key):
    name, layout = key
    spec, cfg = get_dataset(name), data_cfg(name)
    assert errors(spec.check(trees[key], cfg)) == []
    assert spec.load_index(trees[key], cfg).layout == layout.split("_")[0]
    splits = spec.splits(trees[key], cfg)
    assert all(splits[s] for s in ("train", "val", "test"))
    assert not set(splits["train"]) & set(splits["val"]) and not set(splits["val"]) & set(splits["test"])


def test_cremad_index_variants_parse_to_ogm_class_order(trees, tmp_path):
    spec, cfg = get_dataset("cremad"), data_cfg("cremad")
    for key in [("cremad", "ogm"), ("cremad", "njustkmg")]:
        index = spec.load_index(trees[key], cfg)
        assert index.classes == ("neutral", "happy", "sad", "fear", "disgust", "anger")
        for r in index.rows:
            assert ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"][r.label] == r.id.split("_")[2]
        assert len([r for r in index.rows if r.split == "test"]) == 12  # header row skipped
    raw = trees[("cremad", "ogm")] / "train.csv"
    assert raw.read_bytes().startswith(b"\xef\xbb\xbf") and b"\r\n" in raw.read_bytes()
    # MLA lines "<id>.flv Label" parse too
    (tmp_path / "mla.txt").write_text("1085_IWL_SAD_XX.flv Sad\n1001_DFA_ANG_XX.flv Anger\n")
    entries, problems = spec.parse_index(tmp_path / "mla.txt", "train", "ogm")
    assert problems == [] and [(e[1], spec.resolve_label(e[2], ())) for e in entries] == [
        ("1085_IWL_SAD_XX", 2), ("1001_DFA_ANG_XX", 5)]


def test_cremad_carve_of_published_counts_gives_spec_val_sizes():
    counts = [973, 1148, 1131, 1138, 1142, 1166]
    labels = np.repeat(np.arange(6), counts)
    kept, carved = stratified_carve(labels, 0.1, 0)
    assert len(kept) == 6028 and len(carved) == 670
    assert np.bincount(labels[carved]).tolist() == [97, 115, 113, 114, 114, 117]


def test_carved_val_depends_on_split_seed_only(trees):
    spec, root = get_dataset("cremad"), trees[("cremad", "ogm")]
    a = spec.splits(root, data_cfg("cremad"))
    assert spec.splits(root, data_cfg("cremad")) == a
    torch.manual_seed(123)  # the run seed never changes a split
    assert spec.splits(root, data_cfg("cremad")) == a
    b = spec.splits(root, data_cfg("cremad", split_seed=1))
    assert b["val"] != a["val"] and b["test"] == a["test"]
    assert sorted(a["train"] + a["val"]) == sorted(b["train"] + b["val"])


def test_kinetics_sounds_drops_short_and_wavless_clips_with_report(trees):
    spec, root = get_dataset("kinetics_sounds"), trees[("kinetics_sounds", "ogm")]
    cfg = data_cfg("kinetics_sounds")
    index = spec.load_index(root, cfg)
    warns = [p.message for p in spec.check(root, cfg) if p.level == "warn"]
    assert any("dropped for missing audio" in w for w in warns)
    assert any("fewer than 4 frames" in w for w in warns)
    kept = {i for s in spec.splits(root, cfg).values() for i in s}
    assert len(kept) == len(index.rows) - 2
    strict = replace(cfg, drop_missing=False)
    assert len(errors(spec.check(root, strict))) == 2


def test_kinetics_sounds_class_lists_from_file_indices_or_sorted_names(trees):
    spec = get_dataset("kinetics_sounds")
    ogm = spec.load_index(trees[("kinetics_sounds", "ogm")], data_cfg("kinetics_sounds"))
    assert ogm.classes == KS_CLASSES and sorted({r.label for r in ogm.rows}) == list(KS_USED)
    root = trees[("kinetics_sounds", "njustkmg_noclasses")]
    derived = spec.load_index(root, data_cfg("kinetics_sounds"))
    names = sorted({KS_CLASSES[c] for c in KS_USED})
    assert derived.classes == tuple(names)
    assert (root / "classes.txt").read_text().split("\n")[:-1] == names


def test_vggsound_resolves_both_start_forms_and_bss_leading_character(trees):
    spec, cfg = get_dataset("vggsound"), data_cfg("vggsound")
    for key in [("vggsound", "ogm"), ("vggsound", "bss")]:
        index = spec.load_index(trees[key], cfg)
        assert all(r.audio.is_file() and r.frames.is_dir() for r in index.rows)
    ogm = spec.load_index(trees[("vggsound", "ogm")], cfg)
    assert {len(r.id.rsplit("_", 1)[1]) == 6 for r in ogm.rows} == {True, False}  # padded and as written
    assert ogm.classes == VGG_CLASSES and sorted({r.label for r in ogm.rows}) == list(VGG_USED)
    bss = spec.load_index(trees[("vggsound", "bss")], cfg)
    assert bss.classes == tuple(sorted(VGG_CLASSES[c] for c in VGG_USED))


@pytest.mark.parametrize("name, preset, audio, video", [
    ("cremad", "paper", (1, 257, 1250), (3, 1, 224, 224)),
    ("cremad", "ogm", (1, 257, 188), (3, 1, 224, 224)),
    ("cremad", "fbank", (1, 1024, 128), (3, 1, 224, 224)),
    ("kinetics_sounds", "paper", (1, 257, 1003), (3, 3, 224, 224)),
    ("vggsound", "paper", (1, 257, 2006), (3, 1, 384, 384)),
    ("vggsound", "ogm", (1, 129, 626), (3, 3, 224, 224)),
])
def test_preset_item_shapes_match_spec_on_fixture_media(trees, name, preset, audio, video):
    spec = get_dataset(name)
    root = trees[(name, "ogm")]
    cfg = data_cfg(name, preset=preset)
    for train in (True, False):
        item = spec.build("test", root, train, cfg)[0]
        assert tuple(item["audio"].shape) == audio and item["audio"].dtype == torch.float32
        assert tuple(item["video"].shape) == video and item["video"].dtype == torch.float32
        assert isinstance(item["label"], int) and isinstance(item["index"], int)


def test_vggsound_ogm_test_crop_is_repeatable_per_sample(trees):
    spec, root = get_dataset("vggsound"), trees[("vggsound", "ogm")]
    cfg = data_cfg("vggsound", preset="ogm")
    torch.manual_seed(0)
    a = spec.build("test", root, False, cfg)[0]["audio"]
    b = spec.build("test", root, False, cfg)[0]["audio"]
    assert torch.equal(a, b)


def test_check_reports_deleted_truncated_corrupt_and_unknown_label_by_path(tmp_path):
    root = write_fixture("cremad", tmp_path / "c", "ogm")
    index = get_dataset("cremad").load_index(root, data_cfg("cremad"))
    rows = [r for r in index.rows if r.split == "train"]
    deleted = rows[0].audio
    deleted.unlink()
    truncated = rows[1].audio
    truncated.write_bytes(truncated.read_bytes()[:2000])
    corrupt = min(rows[2].frames.iterdir())
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    lines = (root / "test.csv").read_text().splitlines()
    lines[1] = lines[1].split(",")[0] + ",Bored"
    (root / "test.csv").write_text("\n".join(lines) + "\n")
    res = CliRunner().invoke(cli, ["data", "check", "cremad", "--root", str(root), "--deep"])
    assert res.exit_code == 1, res.output
    for path in (deleted, truncated, corrupt):
        assert str(path) in res.output
    assert f"{root / 'test.csv'}:2 'Bored'" in res.output
    skip = CliRunner().invoke(cli, ["data", "check", "cremad", "--root", str(root), "--skip-missing"])
    assert "samples dropped for missing audio" in skip.output and skip.exit_code == 1  # corrupt files still fail


def test_check_strict_turns_count_mismatches_into_errors(trees):
    root = str(trees[("cremad", "ogm")])
    ok = CliRunner().invoke(cli, ["data", "check", "cremad", "--root", root])
    assert ok.exit_code == 0 and "counts or fingerprints differ from the published cremad split" in ok.output
    strict = CliRunner().invoke(cli, ["data", "check", "cremad", "--root", root, "--strict"])
    assert strict.exit_code == 1 and "error: " in strict.output and "not the OGM-GE CREMA-D list" in strict.output


def test_check_names_layout_markers_for_an_unknown_tree(tmp_path):
    res = CliRunner().invoke(cli, ["data", "check", "kinetics_sounds", "--root", str(tmp_path)])
    assert res.exit_code == 1 and "my_train.txt" in res.output and "annotations/train.csv" in res.output


def test_check_works_for_embedded_mfeat():
    res = CliRunner().invoke(cli, ["data", "check", "mfeat"])
    assert res.exit_code == 0, res.output


def test_fixture_cli_writes_a_checkable_tree(tmp_path):
    res = CliRunner().invoke(cli, ["data", "fixture", "vggsound", "--out", str(tmp_path / "v"), "--layout", "bss"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "v" / "label_encoding.json").read_text())
    bad = CliRunner().invoke(cli, ["data", "fixture", "cremad", "--out", str(tmp_path / "x"), "--layout", "nope"])
    assert bad.exit_code != 0 and "ogm" in bad.output


def test_first_and_segment_frame_sampling_read_sorted_files(trees):
    from mmbench.datasets import frames as Fr

    spec, root = get_dataset("kinetics_sounds"), trees[("kinetics_sounds", "ogm")]
    for mode in ("first", "segment"):
        cfg = data_cfg("kinetics_sounds", preset="smoke", frames=3, frame_sampling=mode)
        ds = spec.build("test", root, False, cfg)
        files = Fr.list_frames(ds.rows[0].frames)
        assert [f.name for f in files] == [f"frame_{i + 1}.jpg" for i in range(len(files))]
        idx = [0, 1, 2] if mode == "first" else Fr.segment_indices(len(files), 3, train=False)
        expected = torch.stack([Fr.resize_uint8(Fr.read_frame(files[i]), 32, False) for i in idx], dim=1)
        assert torch.equal(ds[0]["video"], Fr.normalize_(expected.float()))


def test_precomputed_audio_is_loaded_as_stored(trees, tmp_path):
    import pickle
    import shutil

    root = tmp_path / "ks"
    shutil.copytree(trees[("kinetics_sounds", "ogm")], root)
    spec = get_dataset("kinetics_sounds")
    index = spec.load_index(root, data_cfg("kinetics_sounds"))
    (root / "audio_spec").mkdir()
    for r in index.rows:  # OGM-GE pickles (F, T) arrays; .npy files are accepted too
        arr = np.full((7, 9), r.index, np.float32)
        if r.index % 2:
            np.save(root / "audio_spec" / f"{r.id}.npy", arr)
        else:
            (root / "audio_spec" / f"{r.id}.pkl").write_bytes(pickle.dumps(arr))
    cfg = data_cfg("kinetics_sounds", preset="smoke", audio_source="precomputed")
    ds = spec.build("test", root, False, cfg)
    for item in (ds[0], ds[1]):
        assert item["audio"].shape == (1, 7, 9) and torch.all(item["audio"] == item["index"])


def test_cremad_media_folders_can_be_given_as_options(trees, tmp_path):
    import shutil

    src = trees[("cremad", "ogm")]
    root = tmp_path / "c"
    root.mkdir()
    for f in ("train.csv", "test.csv"):
        shutil.copy(src / f, root / f)
    cfg = data_cfg("cremad", **{"paths.audio": str(src / "AudioWAV"), "paths.frames": str(src / "Image-01-FPS")})
    assert errors(get_dataset("cremad").check(root, cfg)) == []
    assert errors(get_dataset("cremad").check(root, data_cfg("cremad")))  # default folders are absent


def test_kinetics_sounds_index_formats_and_parse_errors(tmp_path):
    spec = get_dataset("kinetics_sounds")
    path = tmp_path / "my_train.txt"
    path.write_text("--4-0ihtnBU_000058_000068,10,4\nabc_000001_000011.mp4 10 7\nlonely\n")
    entries, problems = spec.parse_index(path, "train", "ogm")
    assert [(e[1], e[2]) for e in entries] == [("--4-0ihtnBU_000058_000068", "4"), ("abc_000001_000011", "7")]
    assert len(problems) == 1 and f"{path}:3" in problems[0].message and "'lonely'" in problems[0].message
    csv_path = tmp_path / "train.csv"
    csv_path.write_text('youtube_id,label\nxyz_000002_000012,"playing drums"\n')
    entries, _ = spec.parse_index(csv_path, "train", "njustkmg")
    assert [(e[1], e[2]) for e in entries] == [("xyz_000002_000012", "playing drums")]


def test_check_reports_duplicate_ids_and_train_test_overlap(tmp_path):
    root = write_fixture("cremad", tmp_path / "c", "ogm")
    train = (root / "train.csv").read_bytes().decode("utf-8-sig").splitlines()
    test = (root / "test.csv").read_text().splitlines()
    (root / "train.csv").write_text("\n".join(train + [train[0], test[1]]) + "\n")
    msgs = errors(get_dataset("cremad").check(root, data_cfg("cremad")))
    assert any("listed twice in train" in m and f"{root / 'train.csv'}:1" in m for m in msgs)
    assert any("in both train and test" in m and test[1].split(",")[0] in m for m in msgs)
