"""``data check --deep`` decodes every file again (the memo of verified files serves the default
check only), and a damaged decoded cache names itself and the command that rebuilds it."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from mmbench.cli import cli
from mmbench.datasets.cache import META, DecodedCache
from mmbench.errors import DataError


def _cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


@pytest.mark.slow
def test_deep_check_finds_a_wav_that_rotted_in_place_with_the_same_size_and_mtime(tmp_path):
    root = tmp_path / "cremad"
    assert _cli("data", "fixture", "cremad", "--out", root).exit_code == 0
    assert _cli("data", "check", "cremad", "--root", root).exit_code == 0  # fills the memo
    wav = sorted(root.rglob("*.wav"))[0]
    st = os.stat(wav)
    data = bytearray(wav.read_bytes())
    data[:44] = b"\x00" * 44  # the RIFF header rots; size and mtime stay
    wav.write_bytes(bytes(data))
    os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns))
    quick = _cli("data", "check", "cremad", "--root", root)
    assert quick.exit_code == 0  # the memo vouches for the unchanged signature
    deep = _cli("data", "check", "cremad", "--root", root, "--deep")
    assert deep.exit_code == 1 and wav.name in deep.output, deep.output


def _cache(tmp_path, frames_rows=4):
    path = tmp_path / "cremad-0123"
    path.mkdir()
    np.save(path / "audio.npy", np.zeros((2, 3, 5), dtype=np.float16))
    np.save(path / "frames.npy", np.zeros((frames_rows, 3, 4, 4), dtype=np.uint8))
    np.save(path / "offsets.npy", np.array([0, 2, 4]))
    (path / META).write_text(json.dumps({"dataset": "cremad", "indices": [0, 1]}))
    return path


def test_a_truncated_cache_names_itself_and_the_rebuild_command(tmp_path):
    path = _cache(tmp_path)
    assert len(DecodedCache(path).arrays()[1]) == 4
    frames = path / "frames.npy"
    frames.write_bytes(frames.read_bytes()[:200])  # truncated: the memory map cannot cover it
    with pytest.raises(DataError) as info:
        DecodedCache(path).arrays()
    message = str(info.value)
    assert str(path) in message and "mmbench data cache cremad" in message and "--rebuild" in message


def test_a_cache_whose_arrays_disagree_with_its_meta_is_damaged(tmp_path):
    path = _cache(tmp_path, frames_rows=3)
    with pytest.raises(DataError, match="do not match its meta.json"):
        DecodedCache(path).arrays()
