"""The ``mmbench`` command line (click): one module per command group, the options they share in
``options.py``, the work in the package each command drives.

    run.py       run
    sweep.py     sweep, reproduce
    report.py    table, report, figure
    data.py      data prepare | fixture | check | cache
    probe.py     probe
    config.py    config, list
    bench.py     bench

Every ``MMBenchError`` ends as one line on stderr (``error: ...``) and a non-zero exit; no
tracebacks for bad input. Importing this package loads no torch: a typo answers at once.
"""

from __future__ import annotations

import signal

import click

from mmbench.cli import bench, config, data, probe, report, run, sweep


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mmbench")
def cli():
    """mmbench: fair benchmarks for imbalanced multimodal learning."""


# ---------------------------------------------------------------------------- the commands
# One line per command, in `mmbench --help` order (click sorts them by name). A new command group
# is a module of this package (its click code, a thin body over its own package) and one line here.
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


def _stop_like_ctrl_c(signum, frame):
    """SIGTERM (what ``timeout`` and schedulers send) stops a command as Ctrl-C does: one line,
    finished epochs checkpointed, resumable, exit code 130."""
    raise KeyboardInterrupt


def main():
    signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
    cli(prog_name="mmbench")
