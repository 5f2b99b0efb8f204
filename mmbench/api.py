"""The Python API for notebooks: results as a tidy pandas DataFrame, the tables the CLI renders,
training in-process, and exporting the frame.

```python
import mmbench
records = mmbench.run("sustained_boost", "mfeat", seeds=2, epochs=2, data__limit_train_per_class=20)
df = mmbench.load_results("results")            # one row per run x seed x head x rule x split x metric
t = mmbench.table("results")                    # the table1 the CLI prints; t.render("latex")
```

Everything reads the run records through ``store.scan_results`` (the reader ``mmbench table``
uses): a damaged or partial record is never dropped silently; ``load_results`` warns once and
lists them in ``df.attrs["unreadable"]`` (and ``"partial"``, ``"failed"``).
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from mmbench.results.errors import ConfigError

COLUMNS = [
    "dataset",
    "run",
    "method",
    "tag",
    "seed",
    "identity_hash",
    "rule",
    "reported",
    "epoch",
    "split",
    "head",
    "metric",
    "value",
    "path",
]
SPLITS = ("val", "test")


def _root(results_dir) -> Path:
    from mmbench.results.store import default_results_root

    return Path(results_dir) if results_dir is not None else default_results_root()


def _flat(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flat(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, (list, dict)) else value


def _config_columns(rec: dict) -> dict:
    """``config.train.lr``, ``config.method.alpha``, ``config.protocol``, ... of a record."""
    out: dict = {}
    for k, v in (rec.get("config") or {}).items():
        _flat(f"config.{k}", v, out)
    return out


def load_results(
    results_dir=None,
    datasets=None,
    methods=None,
    rules=None,
    splits=SPLITS,
    metrics=None,
    config: bool = False,
    warn: bool = True,
):
    """A tidy ``pandas.DataFrame`` of every finished record under ``results_dir`` (default
    ``$MMBENCH_RESULTS`` or ``./results``): one row per run x seed x head x selection rule x split x
    metric, with columns ``COLUMNS`` (``value`` a fraction in [0, 1], as stored; ``reported``: the
    rule is the record's ``reported_rule``, the one tables show by default; ``identity_hash``: seeds
    of one hash are one table row). ``config=True`` adds the record's settings flattened
    (``config.train.lr``, ``config.method.<hyper-parameter>``, ``config.protocol``).

    Filters: ``datasets``, ``methods`` (method or run names), ``rules`` (``val``, ``last``,
    ``test-best``), ``splits``, ``metrics`` (``acc``, ``map``, ``f1``); a single name or a list.

    Records that could not be used are reported, not dropped: ``df.attrs["unreadable"]`` and
    ``df.attrs["partial"]`` list ``{"path", "message"}`` (with one ``UserWarning`` naming the
    first, unless ``warn=False``), ``df.attrs["failed"]`` the failed seeds ``{"path", "error"}``.
    """
    import pandas as pd

    from mmbench.results.store import scan_results

    def as_set(v):
        return None if v is None else ({v} if isinstance(v, str) else set(v))

    datasets, methods = as_set(datasets), as_set(methods)
    rules, splits, metrics = as_set(rules), as_set(splits), as_set(metrics)
    scan = scan_results(_root(results_dir), datasets, methods)
    rows = []
    for rec in scan.records:
        if rec.get("status") != "finished":
            continue
        ident = (rec.get("identity") or {}).get("hash")
        reported = rec.get("reported_rule", "val")
        base = {
            "dataset": rec["dataset"],
            "run": rec["run"],
            "method": rec["method"],
            "tag": rec.get("tag"),
            "seed": rec["seed"],
            "identity_hash": ident,
            "path": rec["path"],
        }
        extra = _config_columns(rec) if config else {}
        for rule, sel in rec["selection"].items():
            if not isinstance(sel, dict) or (rules and rule not in rules):
                continue
            for split in SPLITS:
                if splits and split not in splits:
                    continue
                for head, values in (sel.get(split) or {}).items():
                    for metric, value in (values or {}).items():
                        if metrics and metric not in metrics:
                            continue
                        rows.append(
                            {
                                **base,
                                "rule": rule,
                                "reported": rule == reported,
                                "epoch": sel.get("epoch"),
                                "split": split,
                                "head": head,
                                "metric": metric,
                                "value": float("nan") if value is None else value,
                                **extra,
                            }
                        )
    frame = pd.DataFrame(rows, columns=COLUMNS + sorted({k for r in rows for k in r} - set(COLUMNS)))
    frame = frame.sort_values(
        ["dataset", "run", "seed", "rule", "split", "head", "metric"], kind="stable", ignore_index=True
    )
    unreadable = [{"path": p.path, "message": p.message} for p in scan.problems if p.kind == "unreadable"]
    partial = [{"path": p.path, "message": p.message} for p in scan.problems if p.kind == "partial"]
    frame.attrs["unreadable"] = unreadable
    frame.attrs["partial"] = partial
    frame.attrs["failed"] = [
        {"path": r["path"], "error": r.get("error")} for r in scan.records if r.get("status") == "failed"
    ]
    if unreadable and warn:
        first = unreadable[0]
        more = f" (+{len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
        warnings.warn(
            f"{len(unreadable)} run record(s) could not be read and are not in the frame: "
            f"{first['path']}: {first['message']}{more}; see df.attrs['unreadable']",
            stacklevel=2,
        )
    return frame


# --------------------------------------------------------------------------- tables
@dataclass
class Table:
    """A table as ``mmbench table`` builds it: ``data`` is the context its templates render
    (``reporting.aggregate.build_tables``: groups, rows, notes, caveats; ``None`` for the
    ``probe`` and ``cost`` layouts), ``render(fmt)`` the text the CLI prints (md, latex, html,
    csv). In a notebook it shows as HTML."""

    records: list
    problems: list
    layout: str = "table1"
    options: dict = field(default_factory=dict)
    data: dict | None = None

    def render(self, fmt: str = "md", standalone: bool = False) -> str:
        from mmbench.reporting.aggregate import render_table

        return render_table(
            self.records,
            fmt,
            layout=self.layout,
            standalone=standalone,
            problems=self.problems,
            **self.options,
        )

    def __str__(self) -> str:
        return self.render("md")

    def _repr_markdown_(self) -> str:
        return self.render("md")

    def _repr_html_(self) -> str:
        return self.render("html")


def table(
    results_dir=None,
    layout: str = "table1",
    metrics=None,
    select: str = "val",
    split: str = "test",
    datasets=None,
    methods=None,
    expected: int | None = None,
    alpha: float = 0.05,
) -> Table:
    """The table ``mmbench table --layout LAYOUT`` renders, as a ``Table`` (same records, same
    options, same notes about damaged or partial records)."""
    from mmbench.reporting.aggregate import LAYOUT_METRICS, LAYOUTS, build_tables
    from mmbench.results.store import scan_results

    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; choose {', '.join(LAYOUTS.names())}")
    ds = [datasets] if isinstance(datasets, str) else datasets
    ms = [methods] if isinstance(methods, str) else methods
    scan = scan_results(_root(results_dir), ds or None, ms or None)
    metrics = [metrics] if isinstance(metrics, str) else metrics
    options = {
        "metrics": metrics or None,
        "select": select,
        "split": split,
        "expected": expected,
        "alpha": alpha,
    }
    data = None
    if layout in LAYOUT_METRICS:  # the grid layouts (table1, table2, long) have table data
        data = build_tables(
            scan.records, layout, metrics or None, select, split, expected, alpha, scan.problems
        )
    return Table(scan.records, scan.problems, layout, options, data)


# --------------------------------------------------------------------------- training
def _overrides(kwargs: dict) -> dict:
    """``epochs=2``, ``data__limit_train_per_class=20`` (``__`` for ``.``) or
    ``**{"method.alpha": 1.0}``: the ``--set`` keys."""
    return {k.replace("__", "."): v for k, v in kwargs.items()}


def run(
    method: str,
    dataset: str,
    seeds=1,
    results_dir=None,
    root=None,
    device: str = "auto",
    tag: str | None = None,
    rerun: bool = False,
    loggers=(),
    progress: bool = False,
    echo=None,
    **overrides,
) -> list[dict]:
    """Train ``method`` on ``dataset`` in this process, as ``mmbench run`` does, and return the
    seeds' ``result.json`` records (finished, failed, or already there and skipped). ``seeds``: a
    count (seeds 0..n-1) or a list of seeds. ``**overrides`` are ``--set`` keys (``epochs=2``,
    ``data__limit_train_per_class=20``, ``**{"method.sigma": 1.2}``). Bad settings raise
    ``mmbench.errors.ConfigError`` before anything is written."""
    from mmbench.benchmark.config import resolve_config
    from mmbench.benchmark.launch import run_local
    from mmbench.results.store import read_record, run_dir

    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ConfigError("seeds must be a positive count or a non-empty list")
    sets = _overrides(overrides)
    if loggers:
        sets["train.loggers"] = [loggers] if isinstance(loggers, str) else list(loggers)
    cfg = resolve_config(dataset, method, sets, seed=seed_list[0], tag=tag, device=device)
    results = _root(results_dir)
    run_local(
        dataset,
        method,
        seed_list,
        sets,
        results,
        root=root,
        device=device,
        tag=tag,
        rerun=rerun,
        progress=progress,
        echo=echo or (lambda *_: None),
        n_jobs=1,
    )
    records = []
    for seed in seed_list:
        rec, problem = read_record(run_dir(results, dataset, cfg.run_name, seed))
        if rec is not None:
            rec["path"] = str(run_dir(results, dataset, cfg.run_name, seed))
            records.append(rec)
        elif problem is not None:
            warnings.warn(problem.line(), stacklevel=2)
    return records


# --------------------------------------------------------------------------- export
EXPORT_FORMATS = ("parquet", "csv")


def check_export_format(fmt: str) -> None:
    """One ``ConfigError`` line for an unknown format, or parquet without pyarrow."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose parquet or csv")
    if fmt == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise ConfigError(
            "parquet export needs pyarrow, which is not installed: pip install 'mmbench[parquet]' "
            "(or: pip install pyarrow), or use --format csv"
        )


def write_frame(frame, out, fmt: str) -> Path:
    """``frame`` to ``out`` as parquet or csv (written to a temporary file, then renamed)."""
    from mmbench.results.store import _atomic_replace

    check_export_format(fmt)
    out = Path(out)
    frame = frame.copy()
    frame.attrs = {}  # the problems are reported by the caller, not stored in the file
    if fmt == "parquet":
        _atomic_replace(out, lambda fh: frame.to_parquet(fh, index=False))
    else:
        data = frame.to_csv(index=False).encode()
        _atomic_replace(out, lambda fh: fh.write(data))
    return out


def export(out, results_dir=None, fmt: str | None = None, **load_kwargs) -> Path:
    """Write ``load_results(results_dir, **load_kwargs)`` to ``out`` as parquet (needs pyarrow)
    or csv (``fmt`` defaults to the file's suffix). Returns the path."""
    fmt = fmt or Path(out).suffix.lstrip(".")
    check_export_format(fmt)
    return write_frame(load_results(results_dir, **load_kwargs), out, fmt)
