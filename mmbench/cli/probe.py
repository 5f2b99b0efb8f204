"""``mmbench probe``: uniform linear probes and imbalance scores of finished runs (``probe.json``).

The work is in ``mmbench.probe.run``.
"""

from __future__ import annotations

import sys

import click

from mmbench.cli.options import (
    EXIT_FAILED_RUNS,
    device_option,
    filter_options,
    friendly_errors,
    parse_roots,
    results_option,
    results_root,
    roots_option,
)
from mmbench.results.errors import MMBenchError


@click.command()
@results_option
@filter_options
@roots_option()
@device_option("Where the encoders extract features: auto, cpu or cuda[:N].")
@click.option("--rerun", is_flag=True, help="Probe runs whose probe.json is current again.")
@friendly_errors
def probe(results, datasets, methods, roots, device, rerun):
    """Fit one linear probe per modality (and one on the concatenation) on the frozen encoders of
    every finished run, with one recipe for all methods; write probe.json beside each record with
    the probe-accuracy ratio and the Shapley contributions. Current probes are skipped."""
    from mmbench.probe.run import probe_results
    from mmbench.results import store

    root = results_root(results)
    scan = store.scan_results(root, datasets or None, methods or None)
    records = scan.records
    if not records and not scan.problems:
        raise MMBenchError(f"no run records under {root}: train with `mmbench run` first, or pass --results DIR")
    counts = probe_results(root, datasets or None, methods or None, rerun=rerun, device=device,
                           roots=parse_roots(roots, sorted({r["dataset"] for r in records})), echo=click.echo)
    click.echo(f"probes: {counts['probed']} written, {counts['skipped']} current, {counts['failed']} failed")
    if counts["failed"]:
        sys.exit(EXIT_FAILED_RUNS)
