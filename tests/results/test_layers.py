"""The package layers, enforced: every import of every module of ``mmbench`` (the lazy ones inside
functions included, read with ``ast``) goes down the layers or sideways where allowed, and no two
packages import each other (``docs/architecture.md`` draws the same layers).

A second group of tests plants an upward import, a sideways import and an import of a moved
module's alias in a copy of the tree and shows that each is refused.
"""

from __future__ import annotations

import ast
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

import mmbench

ROOT = Path(mmbench.__file__).parent

# Bottom up; a package may import packages of its own or of a lower layer. ``mmbench`` is the
# package root (``__version__``); ``cli`` is the command-line layer, ``mmbench/cli*.py`` modules
# or the ``mmbench/cli/`` package.
LAYERS: list[tuple[str, ...]] = [
    ("mmbench",),  # the package root: __version__
    ("results", "configs"),  # run records and store, registry, errors; preset TOMLs
    ("backbones",),
    ("methods", "datasets", "trackers"),  # trackers: loggers fed from the records the harness writes
    ("benchmark",),  # the harness: config, identity, trainer, loaders, launch
    ("testing",),  # the conformance kit (mmbench/testing.py)
    ("speed",),  # mmbench bench
    ("reporting", "probe"),
    ("paper", "api", "tuning"),  # api: the notebook API; tuning: mmbench tune, its tables and figure
    ("cli",),
]
# Imports between packages of one layer that are allowed (importer, imported).
SIDEWAYS = {("reporting", "probe"), ("tuning", "paper")}  # tuning draws its figure with the figure helpers
# Upward imports that are the design: the package root re-exports the notebook API lazily
# (module ``__getattr__``), so ``import mmbench`` stays light.
UPWARD = {("mmbench", "api")}
# Modules that sit in another layer than their folder says (they move into mmbench/cli/).
MODULE_LAYER = {"mmbench.reporting.cli_report": "cli"}
# Aliases kept for one release after a move (old module -> new one). Code outside mmbench may
# import them; mmbench itself imports the new module.
SHIMS = {
    "mmbench.errors": "mmbench.results.errors",
    "mmbench.benchmark.store": "mmbench.results.store",
    "mmbench.benchmark.bench": "mmbench.speed.steps",
    "mmbench.benchmark.data_bench": "mmbench.speed.data",
    "mmbench.benchmark.estimate": "mmbench.speed.estimate",
    "mmbench.reporting.paper_table": "mmbench.paper.table",
    "mmbench.reporting.paper_report": "mmbench.paper.report",
    "mmbench.reporting.figures": "mmbench.paper.figures",
}
RANK = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}


def package_of(module: str) -> str:
    """The layer package of a dotted module name of mmbench."""
    if module in MODULE_LAYER:
        return MODULE_LAYER[module]
    parts = module.split(".")
    if len(parts) == 1:
        return "mmbench"
    top = parts[1]
    return "cli" if top == "cli" or top.startswith("cli_") else top


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import of an mmbench module in ``path``, at any depth (inside
    functions and ``if`` blocks too). ``from a import b`` counts as importing ``a.b`` when that
    is a module of the tree."""
    here = module_name(path, root)
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".") if is_pkg else here.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                is_module = (root.parent / Path(*sub.split("."))).with_suffix(".py").is_file() or (
                    root.parent / Path(*sub.split(".")) / "__init__.py"
                ).is_file()
                out.append((node.lineno, sub if is_module else module))
    return [(line, m) for line, m in out if m == "mmbench" or m.startswith("mmbench.")]


def check_layers(root: Path) -> list[str]:
    """Every violation of the layers in the package at ``root``, one line each (empty: none)."""
    problems = []
    edges: dict[tuple[str, str], str] = {}
    for path in sorted(root.rglob("*.py")):
        source = module_name(path, root)
        if source in SHIMS:
            continue
        src_pkg = package_of(source)
        if src_pkg not in RANK:
            problems.append(
                f"{path.relative_to(root.parent)}: package {src_pkg!r} is in no layer (add it to LAYERS)"
            )
            continue
        for line, target in imports_of(path, root):
            where = f"{path.relative_to(root.parent)}:{line}"
            if target in SHIMS:
                problems.append(
                    f"{where}: imports {target}, an alias kept for plugins; import {SHIMS[target]}"
                )
                continue
            dst_pkg = package_of(target)
            if dst_pkg == src_pkg:
                continue
            if dst_pkg not in RANK:
                problems.append(f"{where}: imports {target} of {dst_pkg!r}, which is in no layer")
                continue
            if (src_pkg, dst_pkg) in UPWARD:
                continue  # a lazy re-export by design, not a dependency of the lower package
            edges.setdefault((src_pkg, dst_pkg), where)
            if RANK[dst_pkg] > RANK[src_pkg]:
                problems.append(f"{where}: {src_pkg} imports {target}, a layer above it ({dst_pkg})")
            elif RANK[dst_pkg] == RANK[src_pkg] and (src_pkg, dst_pkg) not in SIDEWAYS:
                problems.append(f"{where}: {src_pkg} imports {target} of {dst_pkg}, beside it in its layer")
    problems += [
        f"import cycle between packages: {' -> '.join(c)} (first edge at {edges[c[0], c[1]]})"
        for c in package_cycles(edges)
    ]
    return problems


def package_cycles(edges) -> list[list[str]]:
    """One cycle per strongly connected group of packages (Tarjan), as a closed path."""
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(_cycle_in(sorted(group), graph))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _cycle_in(group: list[str], graph) -> list[str]:
    """A closed path through ``group``'s first package inside the group (breadth first)."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                return [*paths[v], start]
            if w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    return [*group, group[0]]


# --------------------------------------------------------------------------- the tree
def test_the_tree_keeps_its_layers():
    assert check_layers(ROOT) == []


def test_every_package_of_the_tree_is_in_a_layer_and_the_layers_name_only_real_packages():
    modules = {module_name(p, ROOT) for p in ROOT.rglob("*.py")}
    real = {package_of(m) for m in modules if m not in SHIMS}
    assert real == set(RANK)


def test_the_shims_are_aliases_of_their_new_module():
    import importlib

    for old, new in SHIMS.items():
        assert importlib.import_module(old) is importlib.import_module(new) or (
            old == "mmbench.errors"
            and importlib.import_module(old).MMBenchError is importlib.import_module(new).MMBenchError
        ), old


def test_a_lazy_import_inside_a_function_is_seen(tmp_path):
    root = _copy_tree(tmp_path)
    (root / "backbones" / "planted.py").write_text(
        "def f():\n    if True:\n        from mmbench.benchmark import trainer\n"
    )
    problems = check_layers(root)
    assert problems[0] == (
        "mmbench/backbones/planted.py:3: backbones imports mmbench.benchmark.trainer, a layer above it (benchmark)"
    )
    assert problems[1:] == [
        "import cycle between packages: backbones -> benchmark -> datasets -> backbones "
        "(first edge at mmbench/backbones/planted.py:3)"
    ]


# --------------------------------------------------------------------------- planted violations
def _copy_tree(tmp_path) -> Path:
    dest = tmp_path / "mmbench"
    shutil.copytree(
        ROOT,
        dest,
        ignore=lambda d, names: [n for n in names if not (n.endswith(".py") or (Path(d) / n).is_dir())],
    )
    return dest


@pytest.mark.parametrize(
    "plant, expected",
    [
        # the results layer reaching up to the harness
        ("results/registry.py", "results imports mmbench.benchmark.trainer, a layer above it (benchmark)"),
        # a method reading a dataset module: beside it in its layer
        ("methods/joint.py", "methods imports mmbench.datasets.base of datasets, beside it in its layer"),
    ],
)
def test_a_planted_import_fails(tmp_path, plant, expected):
    root = _copy_tree(tmp_path)
    target = "mmbench.benchmark.trainer" if plant.startswith("results") else "mmbench.datasets.base"
    path = root / plant
    path.write_text(path.read_text() + f"\n\ndef _planted():\n    import {target}\n")
    problems = check_layers(root)
    assert problems and problems[0].endswith(expected), problems
    assert all(p.startswith("import cycle") for p in problems[1:]), problems


def test_a_planted_cycle_between_packages_fails(tmp_path):
    root = _copy_tree(tmp_path)
    path = root / "probe" / "record.py"
    path.write_text(path.read_text() + "\n\ndef _planted():\n    from mmbench.reporting import aggregate\n")
    problems = check_layers(root)
    assert any("probe imports mmbench.reporting.aggregate of reporting, beside it" in p for p in problems)
    assert any(p.startswith("import cycle between packages: probe -> reporting -> probe") for p in problems)


def test_a_planted_import_of_an_alias_fails(tmp_path):
    root = _copy_tree(tmp_path)
    path = root / "methods" / "joint.py"
    path.write_text(path.read_text() + "\n\nfrom mmbench.errors import ConfigError  # noqa\n")
    (problem,) = check_layers(root)
    assert "imports mmbench.errors, an alias kept for plugins; import mmbench.results.errors" in problem


def test_a_cli_package_and_cli_modules_are_both_the_top_layer():
    assert (
        package_of("mmbench.cli")
        == package_of("mmbench.cli_data")
        == package_of("mmbench.cli.options")
        == "cli"
    )
    assert package_of("mmbench.reporting.cli_report") == "cli"
    assert package_of("mmbench.results.store") == "results" and package_of("mmbench") == "mmbench"


def test_package_cycles_finds_a_cycle_of_three():
    edges = {("a", "b"): "", ("b", "c"): "", ("c", "a"): "", ("c", "d"): ""}
    assert package_cycles(edges) == [["a", "b", "c", "a"]]
    assert package_cycles({("a", "b"): ""}) == []
