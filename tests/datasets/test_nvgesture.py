"""NVGesture loader (specs/datasets.md §5): the .lst syntax, the 80-frame buffer, the shared crop
draw, BGR colour, the paper preset's shapes on full-size media, check() findings by path, and an
end-to-end CLI run with I3D encoders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _image_text_helpers import cli_smoke_run, errors, smoke_cfg, spec

from mmbench.datasets import nvgesture as nv

LINE = ("path:./Video_data/class_01/subject13_r0 depth:sk_depth:138:218 color:sk_color:138:218 "
        "duo_left:duo_left:161:254 label:1")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return spec("nvgesture").write_fixture(tmp_path_factory.mktemp("nv") / "nv", None, 1, 0, n_classes=2)


def test_lst_line_parses_the_official_syntax(tmp_path):
    row = nv.parse_lst_line(LINE, tmp_path)
    assert row["dir"] == tmp_path / "Video_data/class_01/subject13_r0"
    assert row["color"] == ("sk_color", 138, 218) and row["depth"] == ("sk_depth", 138, 218)
    assert row["label"] == 0
    with pytest.raises(LookupError):
        nv.parse_lst_line(LINE.replace("label:1", "label:26"), tmp_path)


@pytest.mark.slow
def test_fixture_checks_clean_under_both_lst_names_and_cli_run_completes(tmp_path, small):
    s = spec("nvgesture")
    assert (small / nv.LST["official"][0]).is_file() and (small / nv.LST["njustkmg"][1]).is_file()
    assert errors(s.check(small, smoke_cfg("nvgesture").data)) == []
    nj = s.write_fixture(tmp_path / "nj", "njustkmg", 1, 1, n_classes=1)
    assert s.detect_layout(nj) == "njustkmg" and errors(s.check(nj, smoke_cfg("nvgesture").data)) == []
    res, record = cli_smoke_run("nvgesture", small, tmp_path / "results", "batch_size=8")
    assert res.exit_code == 0, res.output
    assert record["status"] == "finished"
    assert set(record["selection"]["val"]["test"]) == {"fusion", "rgb", "of", "depth"}


def test_splits_carve_val_from_train(small):
    sp = spec("nvgesture").splits(small, smoke_cfg("nvgesture").data)
    # 5 train clips per class, f = 0.1 -> 1 val clip per class; test keeps its 1 per class
    assert len(sp["train"]) == 8 and len(sp["val"]) == 2 and sp["test"] == [0, 1]
    assert not set(sp["train"]) & set(sp["val"])


def test_train_crop_and_start_are_one_draw_shared_by_all_streams(small):
    s = spec("nvgesture")
    cfg = smoke_cfg("nvgesture").data
    ds = s.build("train", small, True, cfg)
    o = cfg.options["nvgesture"]
    torch.manual_seed(5)
    item = ds[3]
    torch.manual_seed(5)
    x, y = (int(v) for v in torch.randint(0, o["size"] - o["crop"] + 1, (2,)))
    st = int(torch.randint(0, 80 - o["train_frames"] + 1, ()))
    row, c, t = ds.rows[3], o["crop"], o["train_frames"]
    flow = np.load(nv.flow_path(small, "train", row["index"]))[y : y + c, x : x + c]
    assert torch.equal(item["of"], torch.from_numpy(flow).permute(2, 3, 0, 1))  # all 80 flow frames
    depth = nv.load_sensor(row, "depth", o["size"], 80, False)[st : st + t, y : y + c, x : x + c]
    assert torch.allclose(item["depth"], torch.from_numpy(depth).permute(3, 0, 1, 2).float() / 255)
    assert item["rgb"].shape == (3, t, c, c) and item["of"].shape == (2, 80, c, c)


def test_colour_stays_in_opencv_bgr_order_unless_asked(tmp_path):
    from PIL import Image

    s = spec("nvgesture")
    root = s.write_fixture(tmp_path / "red", "official", 1, 0, n_classes=1)
    row = nv.read_lst(root / nv.LST["official"][1], root)[0][0]
    _, start, end = row["color"]
    for f in range(start, end):
        Image.fromarray(np.full((18, 24, 3), (250, 0, 0), np.uint8)).save(nv.frame_path(row["dir"] / "sk_color", f))
    bgr = nv.load_sensor(row, "color", 8, 80, rgb_order=False)
    rgb = nv.load_sensor(row, "color", 8, 80, rgb_order=True)
    assert bgr[0, 0, 0, 2] > 240 and bgr[0, 0, 0, 0] < 10
    assert rgb[0, 0, 0, 0] > 240 and rgb[0, 0, 0, 2] < 10
    ds = s.build("test", root, False, smoke_cfg("nvgesture").data)
    item = ds[0]
    assert item["rgb"][2].mean() > 2 and item["rgb"][0].mean() < -1  # ImageNet-normalised BGR red


def test_short_span_is_zero_filled_to_80_frames(tmp_path, small):
    row = nv.read_lst(small / nv.LST["official"][1], small)[0][0]
    _, start, _ = row["depth"]
    short = {**row, "depth": ("sk_depth", start, start + 10)}
    buf = nv.load_sensor(short, "depth", 8, 80, False)
    assert buf.shape == (80, 8, 8, 1) and buf[10:].max() == 0 and buf[:10].max() > 0
    window = nv.load_sensor(short, "depth", 8, 80, False, window=(5, 16))  # a train clip at s = 5
    assert window.shape == (16, 8, 8, 1) and np.array_equal(window, buf[5:21])


@pytest.mark.slow
def test_paper_preset_shapes_on_full_size_media(tmp_path):
    s = spec("nvgesture")
    root = s.write_fixture(tmp_path / "full", "official", 1, 0, n_classes=1, frame_size=(320, 240), flow_size=256)
    cfg = smoke_cfg("nvgesture", **{"data.preset": "paper"}).data
    train = s.build("train", root, True, cfg)[0]
    assert train["rgb"].shape == (3, 64, 224, 224)
    assert train["of"].shape == (2, 80, 224, 224)
    assert train["depth"].shape == (1, 64, 224, 224)
    assert train["depth"].min() >= 0 and train["depth"].max() <= 1
    test = s.build("test", root, False, cfg)[0]
    assert test["rgb"].shape == (3, 80, 224, 224) and test["depth"].shape == (1, 80, 224, 224)
    flow = np.load(nv.flow_path(root, "test", 0))
    assert torch.equal(test["of"], torch.from_numpy(flow[16:240, 16:240]).permute(2, 3, 0, 1))
    assert all(t.dtype == torch.float32 for t in (test["rgb"], test["of"], test["depth"]))


def test_check_reports_each_corruption_by_path(tmp_path):
    s = spec("nvgesture")
    root = s.write_fixture(tmp_path / "bad", "official", 1, 0, n_classes=2)
    lst = root / nv.LST["official"][0]
    rows = nv.read_lst(lst, root)[0]
    gone = nv.frame_path(row_dir := rows[0]["dir"] / "sk_color", rows[0]["color"][1] + 3)
    gone.unlink()
    broken = nv.frame_path(rows[1]["dir"] / "sk_depth", rows[1]["depth"][1])
    broken.write_bytes(b"\xff\xd8 truncated")
    np.save(nv.flow_path(root, "train", 2), np.zeros((20, 20, 2, 80)))  # float64
    nv.flow_path(root, "train", 3).unlink()
    lines = lst.read_text().splitlines()
    lines[4] = lines[4].replace("label:1", "label:31")
    lines.append("path:./Video_data/class_01/x depth:sk_depth label:1")
    lst.write_text("\n".join(lines) + "\n")
    found = "\n".join(errors(s.check(root, smoke_cfg("nvgesture").data)))
    assert str(gone) in found and "rgb frames missing" in found
    assert f"unreadable depth frame {broken}" in found
    assert f"{nv.flow_path(root, 'train', 2)}: float64 (20, 20, 2, 80)" in found
    assert str(nv.flow_path(root, "train", 3)) in found
    assert f"{lst}:5: unknown label 31" in found
    assert f"{lst}:{len(lines)}:" in found
    assert row_dir.is_dir()


def test_check_requires_i3d_weights_for_the_paper_preset(tmp_path, small):
    s = spec("nvgesture")
    found = "\n".join(errors(s.check(small, smoke_cfg("nvgesture", **{"data.preset": "paper"}).data)))
    assert "data.backbones.i3d.rgb_weights" in found and "data.backbones.i3d.flow_weights" in found
    assert "data.backbones.i3d.pretrained=false" in found
    assert "no nvgesture layout" in errors(s.check(tmp_path, None))[0]


def test_drop_missing_skips_samples_with_absent_media_and_counts_them(tmp_path):
    s = spec("nvgesture")
    root = s.write_fixture(tmp_path / "drop", "official", 1, 0, n_classes=2)
    rows = nv.read_lst(root / nv.LST["official"][0], root)[0]
    nv.flow_path(root, "train", 0).unlink()
    nv.frame_path(rows[6]["dir"] / "sk_depth", rows[6]["depth"][1] + 40).unlink()
    strict_cfg = smoke_cfg("nvgesture").data
    assert len(errors(s.check(root, strict_cfg))) == 2
    cfg = smoke_cfg("nvgesture", **{"data.drop_missing": True}).data
    problems = s.check(root, cfg)
    assert errors(problems) == [] and sum("dropped" in p.message for p in problems) == 2
    sp_all = s.splits(root, strict_cfg)
    sp = s.splits(root, cfg)
    # the carve runs before dropping: the split of the other clips does not move
    assert sp["train"] + sp["val"] == [i for i in sp_all["train"] + sp_all["val"] if i not in (0, 6)]
    train, val = s.build("train", root, True, cfg), s.build("val", root, False, cfg)
    assert sum(d.get("missing media", 0) for d in (train.dropped, val.dropped)) == 2


def test_frame_resize_is_linear_without_antialias_like_opencv():
    # a 1-pixel checkerboard column pattern: INTER_LINEAR at scale 320 -> 256 samples between
    # neighbours (half-pixel centres, no low-pass), so values stay near 0/255 at integer hits
    row = np.tile(np.array([0, 255], np.uint8), 160)
    frames = np.repeat(np.repeat(row[None, None, :, None], 240, axis=1), 3, axis=3)
    out = nv.resize_linear(frames, 256)
    assert out.shape == (1, 256, 256, 3) and out.dtype == np.uint8
    # output column j samples input x = (j + 0.5) * 1.25 - 0.5; j = 2 -> x = 2.625 -> between cols 2 (0) and 3 (255)
    xs = (np.arange(256) + 0.5) * 320 / 256 - 0.5
    lo = np.clip(np.floor(xs).astype(int), 0, 319)
    hi = np.clip(lo + 1, 0, 319)
    w = np.clip(xs - lo, 0, 1)
    expected = np.round(row[lo] * (1 - w) + row[hi] * w)
    assert np.abs(out[0, 0, :, 0].astype(float) - expected).max() <= 1


def test_hflip_flag_flips_every_stream_together_and_bad_sizes_are_refused(small):
    s = spec("nvgesture")
    plain = s.build("train", small, True, smoke_cfg("nvgesture").data)
    flipping = s.build("train", small, True, smoke_cfg("nvgesture", **{"data.nvgesture.hflip": True}).data)
    flips = 0
    for seed in range(6):
        torch.manual_seed(seed)
        a = plain[0]
        torch.manual_seed(seed)
        b = flipping[0]
        flipped = [torch.equal(b[m], a[m].flip(-1)) for m in ("rgb", "of", "depth")]
        assert all(flipped) or all(torch.equal(b[m], a[m]) for m in ("rgb", "of", "depth"))
        flips += all(flipped)
    assert 0 < flips < 6
    with pytest.raises(Exception, match="train_frames"):
        s.build("train", small, True, smoke_cfg("nvgesture", **{"data.nvgesture.train_frames": 90}).data)
