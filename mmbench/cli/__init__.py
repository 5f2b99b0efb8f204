"""The ``mmbench`` command line (click): one module per command group, the options they share in
``options.py``, the work in the package each command drives.

    run.py       run
    sweep.py     sweep, reproduce
    report.py    table, report, figure
    data.py      data prepare | fixture | check | cache
    probe.py     probe
    config.py    config, list
    bench.py     bench

A new command group (``tune``, ...) is one more module here: its click code importing the shared
options from ``mmbench.cli.options`` (never from the ``mmbench.cli_common`` shim, which imports
this package), a body of about 30 lines calling its own package, and one ``add_command`` line below.

Every ``MMBenchError`` ends as one line on stderr (``error: ...``) and a non-zero exit; no
tracebacks for bad input. Importing this package loads no torch: a typo answers at once.
"""

from __future__ import annotations

import signal

import click

from mmbench.cli import bench, config, data, probe, report, run, sweep, trackers, tune


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mmbench")
def cli():
    """mmbench: fair benchmarks for imbalanced multimodal learning."""


# ---------------------------------------------------------------------------- the commands
# The one place where commands join the group: one line each (`mmbench --help` lists them by name).
cli.add_command(run.run)
cli.add_command(sweep.sweep)
cli.add_command(sweep.reproduce)
cli.add_command(report.table)
cli.add_command(report.report)
cli.add_command(report.figure)
cli.add_command(data.data)
cli.add_command(probe.probe)
cli.add_command(config.config_cmd)
cli.add_command(config.list_)
cli.add_command(bench.bench)
cli.add_command(trackers.sync)
cli.add_command(trackers.export)
cli.add_command(tune.tune)


def _stop_like_ctrl_c(signum, frame):
    """SIGTERM (what ``timeout`` and schedulers send) stops a command as Ctrl-C does: one line,
    finished epochs checkpointed, resumable, exit code 130."""
    raise KeyboardInterrupt


def main():
    signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
    cli(prog_name="mmbench")
