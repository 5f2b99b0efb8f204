"""``mmbench config``: the resolved config of one run as TOML, every value with its source.

Sources are those of ``config.value_sources``: ``[code] repo path`` (an official script),
``[paper] table/section``, ``[shared]`` (the shared protocol's files and harness defaults),
``[guess]``, ``[set]`` (a ``--set`` override), ``[default]`` (a method default with no tag). The
header gives the run directory, the identity hash the harness will store in its record and the
selection rule a table reports. ``--diff`` prints only the values that differ from the same run
under ``protocol = "shared"`` without overrides.
"""

from __future__ import annotations

import json
import math
import re

import click

from mmbench.cli_common import friendly_errors

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_value(v) -> str:
    """One value as a TOML literal (``None`` has none: the caller comments the line out)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        items = ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items())
        return "{ " + items + " }" if items else "{}"
    return json.dumps(str(v))


def toml_key(k) -> str:
    return str(k) if _BARE.match(str(k)) else json.dumps(str(k))


def flat_values(cfg) -> dict[str, object]:
    """Dotted key -> resolved value, in the printed order (top level, train, data, options, method)."""
    from mmbench.benchmark.config import TOP_LEVEL_KEYS, _flatten

    out = {k: getattr(cfg, k) for k in TOP_LEVEL_KEYS}
    d = cfg.to_dict()
    out.update({f"train.{k}": v for k, v in d["train"].items()})
    out.update({f"data.{k}": v for k, v in d["data"].items() if k != "options"})
    out.update({f"data.options.{k}": v for k, v in _flatten(d["data"]["options"]).items()})
    out.update({f"method.{k}": v for k, v in d["method_params"].items()})
    return out


def _section_of(key: str) -> tuple[str, str]:
    for section in ("data.options", "train", "data", "method"):
        if key.startswith(section + "."):
            return section, key[len(section) + 1 :]
    return "", key


def render(cfg, only: set[str] | None = None) -> str:
    """The TOML text: ``[train]``, ``[data]``, ``[data.options]``, ``[method]``, one
    ``key = value  # source`` line each (``only``: just these dotted keys)."""
    from mmbench.benchmark.config import value_sources
    from mmbench.benchmark.identity import identity_hash

    sources = value_sources(cfg)
    lines = [
        f"# mmbench config: {cfg.method} on {cfg.dataset}, protocol {cfg.protocol}, seed {cfg.seed}",
        f"# run: {cfg.dataset}/{cfg.run_name}/seed-{cfg.seed}",
        f"# identity hash: {identity_hash(cfg)}"
        + ("  (before data.cache.mode=auto is decided from the data root at run time)"
           if (cfg.data.options.get("cache") or {}).get("mode") == "auto" else ""),
        f"# reported rule: {cfg.reported_rule}"
        + (" (the papers' protocol: the best test epoch)" if cfg.reported_rule == "test-best" else " (best val epoch)"),
    ]
    current = None
    for key, value in flat_values(cfg).items():
        if only is not None and key not in only:
            continue
        section, name = _section_of(key)
        if section != current:
            lines.append("")
            if section:
                lines.append(f"[{section}]")
            current = section
        name = ".".join(toml_key(p) for p in name.split("."))
        source = sources.get(key, "[shared] mmbench default")
        if value is None:
            lines.append(f"# {name} is unset (null)  # {source}")
        else:
            lines.append(f"{name} = {toml_value(value)}  # {source}")
    return "\n".join(lines) + "\n"


def differing(cfg, shared) -> set[str]:
    a, b = flat_values(cfg), flat_values(shared)
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


@click.command(name="config")
@click.option("--method", "-m", required=True, help="Method name.")
@click.option("--dataset", "-d", required=True, help="Dataset name.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Config override, repeatable (as `mmbench run`).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed (names the run directory).")
@click.option("--tag", default=None, help="Run tag, as `mmbench run --tag`.")
@click.option("--diff", is_flag=True, help="Only the values that differ from the shared protocol (no overrides).")
@friendly_errors
def config_cmd(method, dataset, sets, seed, tag, diff):
    """Print the resolved config of a run as TOML: every value with its source, and the run's
    identity hash."""
    from mmbench.benchmark.config import parse_overrides, resolve_config

    cfg = resolve_config(dataset, method, parse_overrides(sets, once=True), seed=seed, tag=tag)
    only = None
    if diff:
        only = differing(cfg, resolve_config(dataset, method, {}, seed=seed))
    click.echo(render(cfg, only), nl=False)
