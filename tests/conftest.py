"""Shared test helpers: tiny run settings and a CLI runner."""

from __future__ import annotations

import warnings

import pytest
from click.testing import CliRunner

from mmbench.cli import cli

# a quick but real configuration on the embedded data: 2 epochs, 20 train rows per class
TINY = ["epochs=2", "data.limit_train_per_class=20"]


def invoke(*args: str):
    """Run the mmbench CLI in-process; returns click's Result (exit_code, output)."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def results(tmp_path):
    return tmp_path / "results"


@pytest.fixture(autouse=True)
def _private_user_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own user cache (media-check memos, derived class lists)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))


# ---------------------------------------------------------------------------- test tiers
# The `slow` tier (pyproject.toml markers): end-to-end runs, CLI sessions and subprocesses, 8 s or
# more each in `pytest --durations=60` of the whole suite at load ~8 (BENCHMARKS.md, "Test tiers"),
# and those of 2026-12-02's quiet --durations=25 (subprocess kills, SIGTERM, two-job pools).
# `pytest -q -m "not slow"` is the quick loop; `pytest -q` runs everything. One place, so test files stay as their authors
# wrote them: a file name maps to None (every test in it) or to the names of its slow tests.
SLOW_TESTS: dict[str, set[str] | None] = {
    "test_plugins.py": None,
    "test_reporting_real_runs.py": None,
    "test_sweep.py": {
        "test_smoke_suite_with_two_workers_completes_and_a_rerun_does_nothing",
        "test_sweep_killed_midway_finishes_only_the_rest",
        "test_slurm_launcher_runs_a_real_run_through_submitits_local_executor",
    },
    "test_training.py": {
        "test_killed_process_resumes_and_matches_the_uninterrupted_run",
        "test_joint_leaves_the_weak_fourier_branch_far_below_unimodal_fourier",
        "test_stopped_run_resumes_from_its_last_epoch_and_ends_like_an_uninterrupted_one",
        "test_same_seed_twice_gives_identical_metrics",
    },
    "test_conformance.py": {
        "test_builtin_method_passes_conformance_kit",
        "test_kit_rejects_method_that_breaks_the_contract",
        "test_kit_leaves_the_registry_as_it_found_it_and_keeps_runs_only_when_asked",
    },
    "test_reconboost.py": {
        "test_resume_in_the_middle_of_both_phases_equals_an_uninterrupted_run",
        "test_resume_in_the_middle_of_a_correction_phase",
    },
    "test_best_checkpoint.py": {
        "test_best_checkpoint_survives_a_resume",
        "test_restored_model_reproduces_the_selected_epochs_metrics",
    },
    "test_agm.py": {"test_agm_resume_equals_uninterrupted_run"},
    "test_av_cache_backbones_e2e.py": {
        "test_cli_fixture_check_run_smoke_end_to_end",
        "test_resumed_run_equals_uninterrupted_run",
        "test_resnet18_encoders_give_512_features_at_real_size",
    },
    "test_backbones_big.py": {
        "test_i3d_has_the_published_layer_shapes_and_gives_1024_features",
        "test_resnet50_projects_2048_to_256_and_loads_a_local_file",
    },
    "test_nvgesture.py": {
        "test_fixture_checks_clean_under_both_lst_names_and_cli_run_completes",
        "test_paper_preset_shapes_on_full_size_media",
    },
    "test_twitter15.py": {
        "test_fixture_checks_clean_and_cli_run_completes_for_both_layouts",
        "test_resumed_run_equals_uninterrupted_run",
    },
    "test_sarcasm.py": {"test_hfm_fixture_checks_clean_and_cli_run_completes"},
    "test_sustained_boost_training.py": {
        "test_classifiers_are_added_to_the_weak_fourier_modality_on_mfeat",
        "test_three_modalities_train_with_the_nvgesture_rules_on_mfeat3",
        "test_ablation_switches_run_from_the_cli",
        "test_resumed_run_equals_uninterrupted_run_with_classifiers_added_before_the_stop",
        "test_untrained_added_layers_keep_their_initialisation_but_pass_gradients",
    },
    "test_gblend.py": {
        "test_cli_runs_gblend_end_to_end_and_tables_it",
        "test_resume_equals_uninterrupted_run",
        "test_online_mode_reestimates_every_super_epoch_and_logs_weights",
    },
    "test_mslr.py": {"test_cli_runs_mslr_end_to_end_and_tables_it", "test_resume_equals_uninterrupted_run"},
    "test_device_augment.py": {
        "test_device_augmented_run_is_seeded_and_resumes_exactly",
        "test_bench_data_only_reports_every_path_and_appends",
    },
    "test_sigterm.py": None,
    "test_sweep_pool.py": {
        "test_fixture_sweep_with_two_jobs_and_loader_workers_finishes_and_a_killed_one_trains_only_the_rest",
        "test_run_with_two_jobs_gives_the_metrics_of_a_sequential_run",
    },
    "test_probe.py": {"test_probe_on_random_encoders_scores_lower_than_on_trained_ones"},
    "test_data_prepare.py": {"test_raw_download_prepares_checks_and_trains"},
    "test_decode_path.py": {
        "test_the_identity_names_the_data_path_and_a_cache_appearing_later_is_refused_not_mixed",
        "test_epoch_loader_with_workers_gives_a_plain_dataloaders_batches",
    },
}


def pytest_collection_modifyitems(config, items):
    seen: dict[str, set[str]] = {}
    for item in items:
        seen.setdefault(item.path.name, set()).add(item.originalname)
        names = SLOW_TESTS.get(item.path.name, set())
        if names is None or item.originalname in names:
            item.add_marker(pytest.mark.slow)
    for file, names in seen.items():  # a renamed test must not leave the slow tier silently
        stale = sorted((SLOW_TESTS.get(file) or set()) - names)
        whole_files = not config.option.keyword and not any("::" in str(a) for a in config.args)
        if stale and whole_files:
            message = f"tests/conftest.py SLOW_TESTS names tests not in {file}: {stale}"
            warnings.warn(pytest.PytestWarning(message), stacklevel=2)
