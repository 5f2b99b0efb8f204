"""Table rows by run identity: a row never averages seeds of different configs.

The seeds of one run folder (``<dataset>/<method>[-<tag>]``) usually share one identity hash
(``result.json`` ``identity.hash``, ``mmbench/benchmark/identity.py``). When they do not (a
default or a method changed between two sweeps under one tag), each hash becomes its own row,
labelled ``<run> [cfg <first 6 hex digits>]`` (``[cfg old]`` for records without a hash, schema
1), and a note names the settings that differ, read from the seeds' ``config.json``. Reads
records and their run folders only; never a method or a dataset.
"""

from __future__ import annotations

from pathlib import Path

from mmbench.results import store

LABEL_HEX = 6


def record_hash(rec: dict) -> str | None:
    return (rec.get("identity") or {}).get("hash")


def _label(run: str, h: str | None) -> str:
    return f"{run} [cfg {h[:LABEL_HEX] if h else 'old'}]"


def _identity_of(rec: dict) -> dict | None:
    """The identity dict of a record's config: ``config.json``'s ``identity.config``, or rebuilt
    from its settings for older files; None if unreadable."""
    from mmbench.benchmark.config import RunConfig
    from mmbench.benchmark.identity import identity_config

    if not rec.get("path"):
        return None
    cfg, problem = store.read_json_checked(Path(rec["path"]) / store.CONFIG)
    if cfg is None or problem is not None:
        return None
    stored = (cfg.get("identity") or {}).get("config")
    if isinstance(stored, dict):  # written with the hash (docs/records.md)
        return stored
    try:
        return identity_config(RunConfig.from_dict(cfg), (rec.get("identity") or {}).get("components") or {})
    except (TypeError, ValueError, KeyError):
        return None


def _differing(groups: dict) -> list[str]:
    """Dotted keys that differ between the first record of each hash group."""
    from mmbench.benchmark.identity import differing_keys

    identities = [_identity_of(recs[0]) for recs in groups.values()]
    if any(i is None for i in identities):
        return []
    keys: set[str] = set()
    for other in identities[1:]:
        keys |= set(differing_keys(identities[0], other))
    return sorted(keys)


def split_by_identity(records: list[dict]) -> tuple[list[dict], list[str]]:
    """Records with ``run`` relabelled where one run folder mixes identity hashes (copies; the
    input is not changed), and one note per such folder naming its rows and the differing keys."""
    by_run: dict[tuple, dict] = {}
    for rec in records:
        by_run.setdefault((rec["dataset"], rec["run"]), {}).setdefault(record_hash(rec), []).append(rec)
    out, notes = [], []
    for (dataset, run), groups in by_run.items():
        if len(groups) == 1:
            out.extend(next(iter(groups.values())))
            continue
        for h, recs in groups.items():
            out.extend({**r, "run": _label(run, h), "run_folder": run} for r in recs)
        keys = _differing(groups)
        rows = ", ".join(_label(run, h) for h in groups)
        why = f"differing keys: {', '.join(keys)}" if keys else "their configs differ (config.json unreadable or only versions differ)"
        notes.append(f"{dataset}/{run} holds seeds of {len(groups)} configs, shown as separate rows ({rows}); {why}")
    return out, notes


def old_record_note(records: list[dict]) -> str | None:
    """Records of schema 1 (no identity hash, no head meanings) still table; say which."""
    old = sorted({f"{r['dataset']}/{r['run']}" for r in records if not record_hash(r)})
    if not old:
        return None
    return (f"{len(old)} run(s) from old records (schema 1: no identity hash, head meanings not recorded): "
            + ", ".join(old))
