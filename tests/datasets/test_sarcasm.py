"""Sarcasm loader (specs/datasets.md §7): HFM list literals with the keyword filter, njustkmg tsv
and BSS JSON layouts, carved val, check() findings by path, an end-to-end CLI run."""

from __future__ import annotations

import json

import pytest
import torch
from _image_text_helpers import cli_smoke_run, errors, smoke_cfg, spec

from mmbench.datasets import sarcasm as sc


@pytest.fixture(scope="module")
def hfm(tmp_path_factory):
    return spec("sarcasm").write_fixture(tmp_path_factory.mktemp("sc") / "hfm", "hfm", 2, 0)


@pytest.mark.slow
def test_hfm_fixture_checks_clean_and_cli_run_completes(tmp_path, hfm):
    assert errors(spec("sarcasm").check(hfm, smoke_cfg("sarcasm").data)) == []
    res, record = cli_smoke_run("sarcasm", hfm, tmp_path / "results")
    assert res.exit_code == 0, res.output
    assert record["status"] == "finished"
    assert set(record["selection"]["val"]["test"]) == {"fusion", "text", "image"}


def test_hfm_filter_drops_keyword_lines_and_label_is_the_last_field(hfm):
    s = spec("sarcasm")
    rows, errs, filtered = s.read_index(hfm / "text" / "train.txt", "hfm", hfm)
    assert errs == [] and filtered == 2 and len(rows) == 4
    assert not any(sc.hfm_filtered(r["text"]) for r in rows)
    valid = (hfm / "text" / "valid2.txt").read_text().splitlines()
    rec = __import__("ast").literal_eval(valid[0])
    assert len(rec) == 4 and rec[2] != rec[3]  # hashtag label differs; the human label (last) is used
    vrows, _, vfiltered = s.read_index(hfm / "text" / "valid2.txt", "hfm", hfm)
    assert vfiltered == 0 and vrows[0]["label"] == rec[3]
    # the row index is the line number in the file, stable under the filter
    assert [r["index"] for r in rows] == [0, 1, 2, 3]


@pytest.mark.parametrize("word", sorted(sc.FILTER_WORDS))
def test_hfm_filter_words_match_whitespace_tokens_only(word):
    assert sc.hfm_filtered(f"what a {word} here")
    assert not sc.hfm_filtered(f"what a {word}y here")  # a longer token is kept


def test_splits_use_valid2_for_hfm_and_a_carved_val_otherwise(tmp_path, hfm):
    s = spec("sarcasm")
    cfg = smoke_cfg("sarcasm").data
    assert {k: len(v) for k, v in s.splits(hfm, cfg).items()} == {"train": 4, "val": 4, "test": 4}
    for layout in ("njustkmg", "bss"):
        root = s.write_fixture(tmp_path / layout, layout, 2, 0)
        problems = s.check(root, cfg)
        assert errors(problems) == []
        assert any("published val split" in p.message for p in problems if p.level == "warn")
        sp = s.splits(root, cfg)
        # 5 train rows per class, f = 0.1: floor(0.5 + 0.5) = 1 val row per class
        assert len(sp["val"]) == 2 and len(sp["train"]) == 8 and not set(sp["val"]) & set(sp["train"])
        assert sp == s.splits(root, cfg)  # deterministic under the split seed
        other = smoke_cfg("sarcasm", **{"data.split_seed": 3}).data
        assert sorted(s.splits(root, other)["val"] + s.splits(root, other)["train"]) == list(range(10))
        item = s.build("val", root, False, cfg)[0]
        assert item["text"].shape == (16,) and item["image"].shape == (3, 32, 32)


def test_paper_preset_image_normalisation_is_amss_sarcasm(hfm):
    opts = spec("sarcasm").presets()["paper"]
    assert opts["image"]["size"] == 224 and opts["text"]["max_len"] == 128
    assert opts["image"]["mean"] == [0.48456249428840364, 0.4988762843596956, 0.530657871261656]
    assert opts["image"]["std"] == [0.24398715912049204, 0.24868027118814742, 0.2573621194247526]
    cfg = smoke_cfg("sarcasm", **{"data.image.size": 224, "data.text.max_len": 128}).data
    item = spec("sarcasm").build("test", hfm, False, cfg)[0]
    assert item["image"].shape == (3, 224, 224) and item["text"].shape == (128,)
    assert item["text"].dtype == torch.int64


def test_check_reports_each_corruption_by_path(tmp_path):
    s = spec("sarcasm")
    root = s.write_fixture(tmp_path / "bad", "hfm", 2, 0)
    rows, _, _ = s.read_index(root / "text" / "test2.txt", "hfm", root)
    rows[0]["image"].unlink()
    rows[1]["image"].write_bytes(b"garbage")
    path = root / "text" / "valid2.txt"
    lines = path.read_text().splitlines()
    rec = __import__("ast").literal_eval(lines[0])
    lines[0] = repr(rec[:3] + [5])  # unknown label
    lines.append("[unbalanced, 'x'")  # unparseable
    lines.append(lines[1])  # duplicated id
    path.write_text("\n".join(lines) + "\n")
    found = "\n".join(errors(s.check(root, smoke_cfg("sarcasm").data)))
    assert str(rows[0]["image"]) in found and "missing" in found
    assert f"unreadable image {rows[1]['image']}" in found
    assert f"{path}:1:" in found and f"{path}:{len(lines) - 1}:" in found
    assert f"duplicated ids in {path}" in found and f"{path}:{len(lines)}" in found


def test_bss_json_images_are_found_by_basename(tmp_path):
    s = spec("sarcasm")
    root = s.write_fixture(tmp_path / "bss", "bss", 1, 0)
    data = json.loads((root / "annotations" / "test_data.json").read_text())
    assert data[0]["image"].startswith("dataset_image/")
    rows, errs, _ = s.read_index(root / "annotations" / "test_data.json", "bss", root)
    assert errs == [] and rows[0]["image"] == root / "images" / data[0]["image"].split("/")[-1]
