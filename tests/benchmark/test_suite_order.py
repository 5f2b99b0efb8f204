"""Suite expansion for issue 13: unimodal reference runs first; the ablation suite runs sustained
boosting with the added classifiers untrained (official code) and trained (paper)."""

from __future__ import annotations

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.suites import load_suite


def test_unimodal_jobs_are_ordered_before_the_runs_initialised_from_them(tmp_path):
    path = tmp_path / "init.toml"
    path.write_text(
        "[suite]\nseeds = 2\n\n"
        '[[runs]]\ndatasets = ["mfeat"]\nmethods = ["mslr", "reconboost"]\n'
        'set = { "method.init_from_unimodal" = true }\n\n'
        '[[runs]]\ndatasets = ["mfeat"]\nmethods = ["unimodal"]\n'
    )
    jobs = load_suite(str(path)).jobs
    methods = [j.method for j in jobs]
    assert methods == ["unimodal"] * 4 + ["mslr"] * 2 + ["reconboost"] * 2
    assert [j.seed for j in jobs[4:]] == [0, 1, 0, 1]  # stable otherwise


def test_ablation_suite_runs_sustained_boosting_both_ways():
    jobs = [j for j in load_suite("ablations").jobs if j.seed == 0]
    trained = {
        resolve_config(j.dataset, j.method, j.overrides_dict).method_params["train_added_layers"]
        for j in jobs
        if not {"method.loss_terms", "method.assignment", "method.weight_net"} & set(j.overrides_dict)
    }
    assert trained == {False, True}
