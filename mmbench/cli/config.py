"""``mmbench config`` (the resolved config of a run as TOML: ``mmbench.benchmark.config_toml``)
and ``mmbench list`` (the registered methods and datasets)."""

from __future__ import annotations

import re
import sys

import click

from mmbench.cli.options import friendly_errors, sets_option


@click.command(name="config")
@click.option("--method", "-m", required=True, help="Method name.")
@click.option("--dataset", "-d", required=True, help="Dataset name.")
@sets_option("Config override, repeatable (as `mmbench run`).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed (names the run directory).")
@click.option("--tag", default=None, help="Run tag, as `mmbench run --tag`.")
@click.option("--diff", is_flag=True, help="Only the values that differ from the shared protocol (no overrides).")
@friendly_errors
def config_cmd(method, dataset, sets, seed, tag, diff):
    """Print the resolved config of a run as TOML: every value with its source, and the run's
    identity hash."""
    from mmbench.benchmark.config import parse_overrides, resolve_config
    from mmbench.benchmark.config_toml import differing, render

    cfg = resolve_config(dataset, method, parse_overrides(sets, once=True), seed=seed, tag=tag)
    only = None
    if diff:
        only = differing(cfg, resolve_config(dataset, method, {}, seed=seed))
    click.echo(render(cfg, only), nl=False)


_SPEC_LINK = re.compile(r"\s*\((?:see )?specs/[^)]*\)")
_PAPER = re.compile(r'"([^"]+)",\s*([^";]*?\b(?:19|20)\d{2})')


def _summary(cls) -> str:
    """One line for ``list methods``: the first line of the method module's docstring (the
    class's when the module has none) without its links to design notes the package does not
    ship, then the paper (``Title``, venue year) the docstring cites, or the class's ``paper``."""
    module = sys.modules.get(cls.__module__)
    for doc in (getattr(module, "__doc__", None), cls.__doc__):
        text = (doc or "").strip()
        if not text:
            continue
        first = _SPEC_LINK.sub("", text.split("\n\n")[0].replace("\n", " "))
        first = re.sub(r"^``[^`]+``:\s*", "", " ".join(first.split())).rstrip(".")
        paper = getattr(cls, "paper", None)
        if not paper:
            m = _PAPER.search(" ".join(text.split()))
            paper = f'"{m.group(1)}", {m.group(2)}' if m else ""
        return f"{first}" + (f" -- {paper}" if paper else "")
    return ""


@click.command(name="list")
@click.argument("what", type=click.Choice(["methods", "datasets"]))
@friendly_errors
def list_(what):
    """List registered methods (with the package and version providing each) or datasets.

    Broken plugins are listed after the working entries, by name, with their error."""
    from mmbench.benchmark import registry

    if what == "methods":
        for name in registry.method_names():
            try:
                summary = _summary(registry.get_method(name))
            except Exception as exc:  # noqa: BLE001 - one odd plugin must not hide the others
                summary = f"(no description: {type(exc).__name__})"
            click.echo(f"{name:<18} {registry.method_origin(name):<24} {summary}")
    else:
        for name in registry.dataset_names():
            spec = registry.get_dataset(name)
            click.echo(f"{name:<18} {spec.num_classes:>4} classes  modalities: {', '.join(spec.modalities)}")
    broken = registry.plugin_failures("method" if what == "methods" else "dataset")
    if broken:
        click.echo(f"\nbroken plugins (not usable; the {what} above are unaffected):")
        for err in broken:
            click.echo(f"{err.name:<18} {err.package:<24} BROKEN: {err.message}")
