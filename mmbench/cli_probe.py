"""``mmbench probe``: uniform linear probes and imbalance scores of finished runs (``probe.json``).

Added to the ``mmbench`` group in ``mmbench/cli.py``; the work is in ``mmbench/probe/run.py``.
"""

from __future__ import annotations

import sys

import click

from mmbench.cli_common import EXIT_FAILED_RUNS, friendly_errors, parse_roots, results_option, results_root
from mmbench.errors import MMBenchError


@click.command()
@results_option
@click.option("--dataset", "-d", "datasets", multiple=True, help="Only these datasets (repeatable).")
@click.option("--method", "-m", "methods", multiple=True, help="Only these methods or runs (repeatable).")
@click.option("--root", "roots", multiple=True, metavar="DATASET=DIR", help="Data root of a dataset, repeatable.")
@click.option("--device", default="cpu", show_default=True, help="Where the encoders extract features (cpu, cuda).")
@click.option("--rerun", is_flag=True, help="Probe runs whose probe.json is current again.")
@friendly_errors
def probe(results, datasets, methods, roots, device, rerun):
    """Fit one linear probe per modality (and one on the concatenation) on the frozen encoders of
    every finished run, with one recipe for all methods; write probe.json beside each record with
    the probe-accuracy ratio and the Shapley contributions. Current probes are skipped."""
    from mmbench.benchmark import store
    from mmbench.probe.run import probe_results

    root = results_root(results)
    if not (scan := store.scan_results(root, datasets or None, methods or None)).records and not scan.problems:
        raise MMBenchError(f"no run records under {root}: train with `mmbench run` first, or pass --results DIR")
    counts = probe_results(root, datasets or None, methods or None, rerun=rerun, device=device,
                           roots=parse_roots(roots), echo=click.echo)
    click.echo(f"probes: {counts['probed']} written, {counts['skipped']} current, {counts['failed']} failed")
    if counts["failed"]:
        sys.exit(EXIT_FAILED_RUNS)
