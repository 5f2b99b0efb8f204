"""Launchers. ``run_local`` trains the seeds of one (dataset, method, overrides) in this process,
skipping finished seeds and resuming partial ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mmbench.benchmark import store
from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.trainer import Interrupted, train_run
from mmbench.errors import NonFiniteLossError


@dataclass
class SeedOutcome:
    seed: int
    status: str  # finished | skipped | failed | interrupted
    path: Path
    message: str = ""
    result: dict | None = field(default=None, repr=False)


def summary_line(result: dict, modalities) -> str:
    sel = result["selection"].get("val")
    if not sel:
        return "no selectable epoch"
    test = sel["test"]
    heads = ["fusion"] + [m for m in modalities if m in test]
    accs = " ".join(f"{h} {100 * test[h]['acc']:.2f}" for h in heads)
    return f"test acc {accs} (val-selected epoch {sel['epoch']}) in {result.get('seconds', 0):.1f}s"


def run_local(
    dataset: str,
    method: str,
    seeds,
    overrides: dict,
    results_root,
    root=None,
    device: str = "auto",
    tag: str | None = None,
    rerun: bool = False,
    progress: bool = True,
    echo=print,
) -> list[SeedOutcome]:
    """Train ``seeds`` one after another. A finished (or failed) seed is skipped unless
    ``rerun``; a NaN in one seed marks that seed failed and the others still run."""
    from mmbench.benchmark.registry import get_dataset

    spec = get_dataset(dataset)
    outcomes = []
    for seed in seeds:
        cfg = resolve_config(dataset, method, overrides, seed=seed, tag=tag, device=device)
        out_dir = store.run_dir(results_root, dataset, cfg.run_name, seed)
        status = store.run_status(out_dir)
        if status in ("finished", "failed") and not rerun:
            prev = store.read_json(out_dir / store.RESULT)
            why = "finished" if status == "finished" else f"failed earlier ({prev.get('error')})"
            echo(f"seed {seed}: skipped, already {why}: {out_dir} (use --rerun to train it again)")
            outcomes.append(SeedOutcome(seed, "skipped", out_dir, why, prev))
            continue
        if rerun and status != "new":
            for name in (store.RESULT, store.CHECKPOINT, store.HISTORY):
                (out_dir / name).unlink(missing_ok=True)
        try:
            result = train_run(cfg, results_root, root=root, progress=progress, echo=echo)
        except NonFiniteLossError as exc:
            echo(f"seed {seed}: FAILED: {exc}; record marked failed in {out_dir}")
            outcomes.append(SeedOutcome(seed, "failed", out_dir, str(exc)))
            continue
        except Interrupted as exc:
            echo(f"seed {seed}: {exc}")
            outcomes.append(SeedOutcome(seed, "interrupted", out_dir, str(exc)))
            break
        echo(f"seed {seed}: {summary_line(result, spec.modalities)} -> {out_dir}")
        outcomes.append(SeedOutcome(seed, "finished", out_dir, result=result))
    return outcomes
