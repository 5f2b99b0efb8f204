"""Suites with runs that need the unimodal reference runs: the references train first (a phase of
their own in a local sweep), and ``"*"`` leaves out a method that refuses the dataset."""

from __future__ import annotations

from mmbench.benchmark.suites import load_suite, reference_phases


def _suite(tmp_path, body: str):
    path = tmp_path / "s.toml"
    path.write_text(body)
    return load_suite(str(path))


def test_teacher_runs_wait_for_the_reference_runs(tmp_path):
    jobs = _suite(
        tmp_path, '[suite]\nseeds = 1\ndatasets = ["mfeat"]\nmethods = ["joint", "umt", "unimodal"]\n'
    ).jobs
    refs, rest = reference_phases(jobs)
    assert [j.method for j in refs] == ["unimodal", "unimodal"]
    assert [j.method for j in rest] == ["joint", "umt"]


def test_init_from_unimodal_runs_wait_too_and_plain_suites_stay_one_phase(tmp_path):
    body = '[suite]\nseeds = 1\n\n[[runs]]\ndatasets = ["mfeat"]\nmethods = ["unimodal", "mslr"]\n'
    assert len(reference_phases(_suite(tmp_path, body).jobs)) == 1
    body += 'set = { "method.init_from_unimodal" = true }\n'
    assert len(reference_phases(_suite(tmp_path, body).jobs)) == 2


def test_star_leaves_out_methods_that_refuse_the_dataset_but_never_a_named_one(tmp_path):
    star = _suite(tmp_path, '[suite]\nseeds = 1\ndatasets = ["mfeat"]\nmethods = ["*"]\n').jobs
    assert "greedy" not in {j.method for j in star} and "umt" in {j.method for j in star}
    import pytest

    from mmbench.errors import ConfigError

    named = _suite(tmp_path, '[suite]\nseeds = 1\ndatasets = ["mfeat"]\nmethods = ["greedy"]\n').jobs
    assert [j.method for j in named] == ["greedy"]  # kept: the sweep's plan refuses it in one line
    with pytest.raises(ConfigError, match="greedy needs staged convolutional encoders"):
        from mmbench.benchmark.launch import plan

        plan(named, tmp_path / "results")
