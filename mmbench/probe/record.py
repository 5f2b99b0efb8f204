"""Reading ``probe.json`` (torch-free: tables and reports read it)."""

from __future__ import annotations

from pathlib import Path

from mmbench.results import store
from mmbench.results.errors import MMBenchError

RULE = "val"  # probes use the weights the val rule selected


def read_probe(run_dir) -> dict | None:
    """The run's ``probe.json`` (None if absent); an unreadable one raises one clear error."""
    path = Path(run_dir) / store.PROBE
    try:
        return store.read_json(path)  # checked against record_schema.PROBE
    except store.RecordInvalid as exc:
        raise MMBenchError(f"{str(exc).split('; restore it')[0]}; probe the run again with "
                           "`mmbench probe --rerun`") from None
    except (ValueError, OSError) as exc:
        raise MMBenchError(
            f"{path} is unreadable ({type(exc).__name__}); probe the run again with `mmbench probe --rerun`"
        ) from None


def is_current(probe: dict | None, record: dict, recipe_hash: str | None = None) -> bool:
    """Whether ``probe`` was made from the weights ``record`` selects now (same identity hash
    and selected epoch) and, when given, with the recipe of ``recipe_hash``."""
    if not probe:
        return False
    run = probe.get("run", {})
    epoch = ((record.get("checkpoints") or {}).get(RULE) or {}).get("epoch")
    if epoch is None:
        epoch = ((record.get("selection") or {}).get(RULE) or {}).get("epoch")
    return (
        (recipe_hash is None or probe.get("recipe_hash") == recipe_hash)
        and run.get("identity_hash") == (record.get("identity") or {}).get("hash")
        and run.get("epoch") == epoch
    )
