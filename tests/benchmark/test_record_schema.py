"""The record schema is code, checked on every read: each field of a real record mutated to a
wrong type is named by the validator, and every reader (table, table --layout cost/probe,
report, probe, run) answers it with one line naming the file and the field, never a traceback
and never a silently missing cell."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mmbench.cli import cli
from mmbench.results import record_schema, store

RUN = [
    "-m",
    "joint",
    "-d",
    "mfeat",
    "--set",
    "epochs=2",
    "--set",
    "data.limit_train_per_class=5",
    "--no-progress",
]
# free-form subtrees (settings, environment, a method's diagnostics): any JSON is valid there
FREE = {
    "config.train",
    "config.method",
    "identity.config",
    "environment",
    "sources",
    "overrides",
    "train",
    "data",
    "method_params",
    "splits",
    "diagnostics",
    "recipe",
    "lr",
    "time",
}


def _cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """One real finished seed (2 epochs of joint on mfeat) with its probe.json."""
    results = tmp_path_factory.mktemp("schema") / "results"
    assert _cli("run", *RUN, "--results", results).exit_code == 0
    assert _cli("probe", "--results", results).exit_code == 0
    (seed,) = results.glob("mfeat/*/seed-0")
    return seed


def _paths(obj, prefix=()):
    """Every path to a value inside ``obj`` (lists: their first item), outside the free subtrees."""
    if prefix and (".".join(map(str, prefix)) in FREE or str(prefix[-1]) in FREE):
        return
    if prefix:
        yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list) and obj:
        yield from _paths(obj[0], (*prefix, 0))


def _swap(value):
    """A value of another JSON type than ``value`` (never null: null is valid where nullable)."""
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, (int, float)):
        return "0.5" if value is not None else 7
    if isinstance(value, str):
        return 7
    if isinstance(value, list):
        return "x"
    if isinstance(value, dict):
        return 3
    return 7  # null -> a number where a string, object or null is expected


def _set(obj, path, value):
    out = copy.deepcopy(obj)
    node = out
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return out


def _dotted(path) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")


def _representatives(paths):
    """One path per (top key, depth, leaf name): the metrics of every rule, split and head share a
    shape, so the slow reader test takes each shape once."""
    seen, out = set(), []
    for p in paths:
        key = (p[0], len(p), p[-1] if len(p) > 1 else None)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


@pytest.mark.slow  # the module's real run (about 10 s) is trained once for these
@pytest.mark.parametrize("name", ["result.json", "config.json", "probe.json"])
def test_every_field_swapped_to_a_wrong_type_is_named_by_the_validator(real_run, name):
    record = json.loads((real_run / name).read_text())
    check = record_schema.CHECKS[name]
    assert check(record) == []
    paths = list(_paths(record))
    assert len(paths) > 10
    missed = []
    for path in paths:
        problems = check(_set(record, path, _swap(_get(record, path))))
        if not any(pr.startswith(_dotted(path)) for pr in problems):
            missed.append((_dotted(path), problems))
    assert not missed, missed


@pytest.mark.slow  # the module's real run (about 10 s) is trained once for these
def test_every_history_field_swapped_is_named_and_a_null_metric_is_refused(real_run):
    line = json.loads((real_run / "history.jsonl").read_text().splitlines()[0])
    assert record_schema.check_history_line(line) == []
    for path in _paths(line):
        problems = record_schema.check_history_line(_set(line, path, _swap(_get(line, path))))
        assert any(pr.startswith(_dotted(path)) for pr in problems), (path, problems)
    rec = json.loads((real_run / "result.json").read_text())
    nulled = _set(rec, ("selection", "val", "test", "fusion", "acc"), None)
    assert record_schema.check_result(nulled)[0].startswith("selection.val.test.fusion.acc: is null")
    assert record_schema.check_result(_set(rec, ("selection", "val", "test", "fusion", "acc"), 93.1))


def _get(obj, path):
    for p in path:
        obj = obj[p]
    return obj


def _one_line_names(out: str, file: str, field: str) -> bool:
    return any(file in ln and field in ln for ln in out.splitlines())


def _readers(results: Path, tmp: Path):
    return {
        "table": ["table", "--results", results],
        "table-cost": ["table", "--results", results, "--layout", "cost"],
        "table-probe": ["table", "--results", results, "--layout", "probe"],
        "report": ["report", "--results", results, "--out", tmp / "r.html", "--jobs", "1"],
        "probe": ["probe", "--results", results],
        "run": ["run", *RUN, "--results", results],
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", ["result.json", "config.json", "probe.json", "history.jsonl"])
def test_every_reader_names_a_mutated_record_in_one_line_without_a_traceback(real_run, tmp_path, name):
    results = tmp_path / "results"
    seed = results / real_run.relative_to(real_run.parents[2])
    shutil.copytree(real_run.parents[2], results)
    original = (real_run / name).read_text()
    lines = original.splitlines()
    record = json.loads(lines[-1] if name == "history.jsonl" else original)
    # who reads what: result.json every reader; config.json `run` (seed_status) and the tables'
    # identity notes; probe.json the probe table; history.jsonl the report's curves
    readers = {
        "result.json": None,
        "config.json": ["run"],
        "probe.json": ["table-probe"],
        "history.jsonl": ["report"],
    }[name]
    failures = []
    for path in _representatives(list(_paths(record))):
        bad = _set(record, path, _swap(_get(record, path)))
        text = (
            "\n".join([*lines[:-1], json.dumps(bad)]) + "\n" if name == "history.jsonl" else json.dumps(bad)
        )
        (seed / name).write_text(text)
        for reader, args in _readers(results, tmp_path).items():
            if readers is not None and reader not in readers:
                continue
            res = _cli(*args)
            out = res.output + (res.stderr if hasattr(res, "stderr") else "")
            if reader == "report" and (tmp_path / "r.html").is_file():
                out += (tmp_path / "r.html").read_text()
            crashed = res.exception is not None and not isinstance(res.exception, SystemExit)
            if crashed or "Traceback" in out or not _one_line_names(out, name, _dotted(path)):
                failures.append((reader, _dotted(path), res.exit_code, repr(res.exception), out[-300:]))
            (tmp_path / "r.html").unlink(missing_ok=True)
    (seed / name).write_text(original)
    assert not failures, failures[:5]


@pytest.mark.slow  # the module's real run (about 10 s) is trained once for these
def test_a_truncated_or_empty_history_is_named_by_the_report(real_run, tmp_path):
    from mmbench.reporting.curves import load_histories_checked

    results = tmp_path / "results"
    shutil.copytree(real_run.parents[2], results)
    (seed,) = results.glob("mfeat/*/seed-0")
    rec, _ = store.read_record(seed)
    rec["path"] = str(seed)
    for text in ("", (real_run / "history.jsonl").read_text().splitlines()[0] + "\n"):
        (seed / "history.jsonl").write_text(text)
        _, problems = load_histories_checked([rec])
        assert len(problems) == 1 and "history.jsonl" in problems[0].path
        assert "truncated or missing" in problems[0].message


@pytest.mark.slow  # the module's real run (about 10 s) is trained once for these
def test_a_last_checkpoint_of_the_wrong_structure_is_one_line(real_run, tmp_path):
    import torch

    results = tmp_path / "results"
    shutil.copytree(real_run.parents[2], results)
    (seed,) = results.glob("mfeat/*/seed-0")
    (seed / "result.json").unlink()
    torch.save({"epoch": 0, "model": {}}, seed / "last.ckpt")
    res = _cli("run", *RUN, "--results", results)
    assert res.exit_code == 2, res.output
    assert (
        "last.ckpt" in res.output and "global_step: missing" in res.output and "Traceback" not in res.output
    )


def test_a_synthetic_record_passes_and_each_swapped_top_field_is_named(tmp_path):
    """The quick-tier check of the validator (the slow tests above mutate a real record)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from reporting_fixtures import write_run

    write_run(tmp_path, "mfeat", "joint", 0, {"fusion": 0.9, "image": 0.8, "fourier": 0.7}, epochs=3)
    (seed,) = tmp_path.glob("mfeat/*/seed-0")
    record = json.loads((seed / "result.json").read_text())
    assert record_schema.check_result(record) == []
    for key in ("dataset", "seed", "status", "selection", "heads"):
        problems = record_schema.check_result(_set(record, (key,), _swap(record[key])))
        assert problems and problems[0].startswith(f"{key}:"), (key, problems)
    rec, problem = store.read_record(seed)
    assert rec is not None and problem is None
