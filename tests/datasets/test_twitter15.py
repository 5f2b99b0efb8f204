"""Twitter-15 loader (specs/datasets.md §6): TomBERT and njustkmg tsvs, positional parsing,
tokenisation, image transform, check() findings by path, end-to-end runs and resume."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from _image_text_helpers import cli_smoke_run, errors, smoke_cfg, spec

from mmbench.benchmark.trainer import Interrupted, train_run
from mmbench.datasets import image_text as it


@pytest.fixture(scope="module")
def tombert(tmp_path_factory):
    return spec("twitter15").write_fixture(tmp_path_factory.mktemp("tw") / "tombert", "tombert", 2, 0)


@pytest.mark.slow
def test_fixture_checks_clean_and_cli_run_completes_for_both_layouts(tmp_path, tombert):
    s = spec("twitter15")
    nj = s.write_fixture(tmp_path / "nj", "njustkmg", 2, 1)
    for root in (tombert, nj):
        assert errors(s.check(root, smoke_cfg("twitter15").data)) == []
    res, record = cli_smoke_run("twitter15", nj, tmp_path / "results")
    assert res.exit_code == 0, res.output
    assert record["status"] == "finished"
    assert set(record["selection"]["val"]["test"]) == {"fusion", "text", "image"}


def test_tombert_test_file_is_parsed_by_position_despite_its_four_name_header(tombert):
    header = (tombert / "test.tsv").read_text().splitlines()[0].split("\t")
    assert header == ["index", "#1 ImageID", "#2 String", "#2 String"]
    rows = spec("twitter15").read_split(tombert, "test")
    assert [r["label"] for r in rows] == [0, 0, 1, 1, 2, 2]
    assert all("$T$" in r["text"] and r["text"].startswith('"') for r in rows)
    assert rows[0]["aspect"] == "RT @user0"
    # an image id without extension gets ".jpg"; consecutive rows share an image
    assert all(r["image"].suffix == ".jpg" and r["image"].is_file() for r in rows)
    assert rows[0]["image"] == rows[1]["image"]


def test_dev_is_the_validation_split(tombert):
    s = spec("twitter15")
    cfg = smoke_cfg("twitter15").data
    val = s.build("val", tombert, False, cfg)
    dev = s.read_split(tombert, "val")
    assert val.labels == [r["label"] for r in dev] and len(val) == 6
    assert s.splits(tombert, cfg) == {"train": list(range(6)), "val": list(range(6)), "test": list(range(6))}


def test_text_ids_have_no_special_tokens_and_are_right_padded_with_zero():
    opts = it.text_options(12, it.TINY, it.TINY)
    ids = it.encode_texts(["good day", "love " * 20], opts)
    tok = it.load_tokenizer(it.TINY)
    good, day = tok.convert_tokens_to_ids(["good", "day"])
    assert ids.dtype == torch.int64 and ids.shape == (2, 12)
    assert ids[0].tolist() == [good, day] + [0] * 10
    assert (ids[1] != 0).all()  # truncated to 12, no [SEP] at the end
    special = it.encode_texts(["good day"], {**opts, "special_tokens": True})
    assert special[0, :4].tolist() == [tok.cls_token_id, good, day, tok.sep_token_id]


def test_aspect_fill_replaces_the_target_and_pair_needs_special_tokens(tombert):
    s = spec("twitter15")
    cfg = smoke_cfg("twitter15", **{"data.text.aspect": "fill", "data.text.max_len": 64}).data
    row = s.read_split(tombert, "train")[0]
    filled = s.build("train", tombert, True, cfg)[0]["text"]
    expected = it.encode_texts([row["text"].replace("$T$", row["aspect"])], cfg.options["text"])[0]
    assert torch.equal(filled, expected)
    with pytest.raises(Exception, match="special_tokens"):
        s.build("train", tombert, True, smoke_cfg("twitter15", **{"data.text.aspect": "pair"}).data)


def test_paper_preset_shapes_and_normalisation(tmp_path, tombert):
    from PIL import Image

    vocab = tmp_path / "vocab"
    vocab.mkdir()
    (vocab / "vocab.txt").write_text("\n".join(it.tiny_vocab()) + "\n")
    cfg = smoke_cfg("twitter15", **{"data.preset": "paper", "data.text.tokenizer": str(vocab)}).data
    item = spec("twitter15").build("train", tombert, True, cfg)[0]
    assert item["text"].shape == (128,) and item["text"].dtype == torch.int64
    assert item["image"].shape == (3, 224, 224) and item["image"].dtype == torch.float32
    # Resize((224,224)) -> ToTensor -> Normalize(AMSS Twitter mean/std)
    rows = spec("twitter15").read_split(tombert, "train")
    with Image.open(rows[0]["image"]) as im:
        raw = torch.from_numpy(np.array(im.convert("RGB").resize((224, 224), Image.BILINEAR)))
    raw = raw.permute(2, 0, 1).float() / 255
    mean = torch.tensor((0.42455, 0.44051, 0.47076)).view(3, 1, 1)
    std = torch.tensor((0.24485, 0.24617, 0.25451)).view(3, 1, 1)
    assert torch.allclose(item["image"], (raw - mean) / std, atol=0.05)


def test_check_reports_each_corruption_by_path(tmp_path):
    s = spec("twitter15")
    root = s.write_fixture(tmp_path / "bad", "tombert", 2, 0)
    rows = s.read_split(root, "train")
    rows[0]["image"].unlink()  # missing image
    rows[2]["image"].write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")  # corrupt jpg
    lines = (root / "dev.tsv").read_text().splitlines()
    f = lines[1].split("\t")
    f[1] = "7"  # unknown label
    lines[1] = "\t".join(f)
    lines.append("only\ttwo")  # unparseable line
    (root / "dev.tsv").write_text("\n".join(lines) + "\n")
    found = "\n".join(errors(s.check(root, smoke_cfg("twitter15").data)))
    assert str(rows[0]["image"]) in found and "missing" in found
    assert f"unreadable image {rows[2]['image']}" in found
    assert f"{root / 'dev.tsv'}:2: unknown label '7'" in found
    assert f"{root / 'dev.tsv'}:{len(lines)}:" in found


def test_check_reports_missing_layout_and_weights(tmp_path):
    s = spec("twitter15")
    found = errors(s.check(tmp_path, smoke_cfg("twitter15").data))
    assert len(found) == 1 and "train.tsv" in found[0] and "annotations/train.tsv" in found[0]
    root = s.write_fixture(tmp_path / "w", "tombert", 1, 0)
    cfg = smoke_cfg("twitter15", **{"data.image.weights": str(tmp_path / "nope.pth"),
                                    "data.text.model": str(tmp_path / "nobert")}).data
    found = "\n".join(errors(s.check(root, cfg)))
    assert "data.image.weights" in found and "nope.pth" in found and "data.text.model" in found


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(tmp_path, tombert):
    cfg = smoke_cfg("twitter15", epochs=2)
    full = train_run(cfg, tmp_path / "a", root=tombert, progress=False, echo=lambda *_: None)
    with pytest.raises(Interrupted):
        train_run(cfg, tmp_path / "b", root=tombert, progress=False, stop_after_epochs=1, echo=lambda *_: None)
    resumed = train_run(cfg, tmp_path / "b", root=tombert, progress=False, echo=lambda *_: None)
    assert resumed["selection"] == full["selection"]
    shutil.rmtree(tmp_path / "a")


def test_drop_missing_skips_rows_without_image_and_keeps_file_indices(tmp_path):
    s = spec("twitter15")
    root = s.write_fixture(tmp_path / "drop", "tombert", 2, 0)
    rows = s.read_split(root, "test")
    rows[0]["image"].unlink()  # shared by rows 0 and 1
    assert errors(s.check(root, smoke_cfg("twitter15").data))
    cfg = smoke_cfg("twitter15", **{"data.drop_missing": True}).data
    assert errors(s.check(root, cfg)) == []
    ds = s.build("test", root, False, cfg)
    assert ds.indices == [2, 3, 4, 5] and ds.dropped == {"missing image": 2}
