"""``mmbench bench``: steady-state training-step time per method, or the data path alone
(``mmbench.speed.steps``, ``mmbench.speed.data``)."""

from __future__ import annotations

from pathlib import Path

import click

from mmbench.cli.options import dataset_root, device_option, friendly_errors, root_option, sets_option


@click.command()
@click.option("--dataset", "-d", required=True, help="Dataset name.")
@click.option("--method", "-m", "methods", multiple=True, help="Methods to time (joint is always added).")
@root_option
@sets_option("Config override, repeatable.")
@device_option()
@click.option("--steps", type=click.IntRange(min=1), default=30, show_default=True, help="Timed steps per method.")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True, help="Interleaved rounds.")
@click.option("--append", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Append the markdown table to FILE (e.g. BENCHMARKS.md).")
@click.option("--note", default="", help="Free text added to the table heading.")
@click.option("--data-only", is_flag=True,
              help="Time only the data: storage to model-ready batches on the device (augmentation included), "
                   "samples/s for the decode, cached and cached-device paths; --steps caps batches per round.")
@friendly_errors
def bench(dataset, methods, root, sets, device, steps, warmup, rounds, append, note, data_only):
    """Steady-state training-step time: data wait vs compute, samples/s, ratio to joint."""
    from mmbench.benchmark.config import parse_overrides
    from mmbench.speed.steps import machine_description, markdown_table
    from mmbench.speed.steps import measure_steps as benchmark

    root = dataset_root(root, dataset)
    if data_only:
        from mmbench.speed.data import data_benchmark, data_markdown_table

        results = data_benchmark(dataset, parse_overrides(sets, once=True), root, device, rounds=rounds, max_batches=steps,
                                 warmup_batches=min(warmup, 1), echo=click.echo)
        text = data_markdown_table(results, dataset, machine_description(device), note)
    else:
        results = benchmark(dataset, methods, parse_overrides(sets, once=True), root, device, steps, warmup, rounds)
        text = markdown_table(results, dataset, machine_description(device), note)
    click.echo(text)
    if append:
        with open(append, "a") as fh:
            fh.write("\n" + text)
        click.echo(f"appended to {append}")
