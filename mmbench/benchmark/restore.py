"""Load the model a table row describes: a finished run's selected weights from ``best.ckpt``.

Later tools (linear probes, figures, initialising a method from unimodal reference runs) read a
run through its record only: ``config.json`` gives the resolved config, ``best.ckpt`` the model and
method state at the epoch a selection rule chose. The model is rebuilt by the harness's own
``build_run`` (same datasets, backbones, heads and hook order as training), so nothing here knows
about a particular method or dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mmbench.benchmark.config import RunConfig
from mmbench.benchmark.loaders import EpochLoader, to_device
from mmbench.benchmark.registry import get_dataset, get_method
from mmbench.results import store
from mmbench.results.errors import MMBenchError


@dataclass
class RestoredRun:
    """A run's model with the weights of the epoch ``rule`` selects, in eval mode."""

    cfg: RunConfig
    spec: object
    method: object
    model: torch.nn.Module
    epoch: int
    rule: str
    run_dir: Path
    data_root: Path | None
    device: torch.device


def _selected_state(run_dir: Path, rule: str) -> tuple[dict, dict]:
    path = run_dir / store.BEST
    if not path.is_file():
        raise MMBenchError(
            f"{path} is missing: the run has no selected weights (it is unfinished, or was trained "
            f"before best.ckpt existed); train it again with `mmbench run ... --rerun`"
        )
    try:
        best = torch.load(path, map_location="cpu", weights_only=False)
        state = best["rules"][rule]
    except KeyError:
        raise MMBenchError(f"{path} holds no weights for the {rule!r} rule; retrain the run with --rerun") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets one line
        raise MMBenchError(f"{path} is unreadable ({type(exc).__name__}); retrain the run with --rerun") from None
    return best, state


def load_selected(run_dir, rule: str = "val", device="cpu", root=None) -> RestoredRun:
    """Rebuild the run in ``run_dir`` and load the weights of the epoch ``rule`` selected."""
    from mmbench.benchmark.trainer import build_run, check_data, resolve_device

    run_dir = Path(run_dir)
    config = store.read_json(run_dir / store.CONFIG)
    if config is None:
        raise MMBenchError(f"{run_dir / store.CONFIG} is missing: {run_dir} is not a run directory")
    _, state = _selected_state(run_dir, rule)
    cfg = RunConfig.from_dict(config)
    spec, method_cls = get_dataset(cfg.dataset), get_method(cfg.method)
    dev = resolve_device(device) if isinstance(device, str) else device
    data_root, _ = check_data(spec, root, cfg.data)
    run = build_run(cfg, spec, method_cls, data_root, dev, {"model": state["model"], "method": state["method"]})
    run.model.eval()
    return RestoredRun(cfg, spec, run.method, run.model, state["epoch"], rule, run_dir, data_root, dev)


@torch.no_grad()
def extract_features(restored: RestoredRun, split: str, batch_size: int | None = None) -> dict:
    """Encoder outputs of every modality on ``split`` (``train``/``val``/``test``), eval mode, no
    augmentation, in the split's order: ``{"features": {modality: Tensor[N, D]}, "labels": Tensor[N]}``."""
    cfg = restored.cfg
    dataset = restored.spec.build(split, restored.data_root, False, cfg.data)
    loader = EpochLoader(dataset, batch_size or cfg.train.eval_batch_size, False)
    model = restored.model.eval()
    feats: dict[str, list] = {m: [] for m in restored.spec.modalities}
    labels = []
    for batch in loader:
        batch = to_device(batch, restored.device)
        for m in feats:
            feats[m].append(model.encoders[m](batch[m]).float().flatten(1).cpu())
        labels.append(batch["label"].cpu())
    return {"features": {m: torch.cat(v) for m, v in feats.items()}, "labels": torch.cat(labels)}
