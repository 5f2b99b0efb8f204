"""Deprecated: moved to ``mmbench.cli.options`` (kept for one release, for plugins and scripts
that import the shared options from here)."""

from mmbench.cli.options import (  # noqa: F401
    EXIT_ERROR,
    EXIT_FAILED_RUNS,
    EXIT_INTERRUPTED,
    echo_problems,
    friendly_errors,
    load_records,
    parse_roots,
    results_option,
    results_root,
    scan_records,
    table_options,
)
