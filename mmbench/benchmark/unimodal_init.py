"""``init_from_unimodal``: start a run from the unimodal reference runs' selected weights.

ReconBoost's official CREMA-D command (huacong/ReconBoost README, ``--use_pretrain``; ``train.py``
``init_pretrain`` loads each modality's pre-trained network) and MSLR's paper (late fusion of
fine-tuned unimodal models) start from unimodal models. The harness does the lookup, so methods
stay store-free: for every modality m it finds the finished ``unimodal`` run of the same dataset,
data preset and seed through its record (``results/<dataset>/unimodal-<m>[_<suffix>]/seed-<n>``,
``method.unimodal_suffix`` naming a tagged run), loads the weights its reported rule selected
(``best.ckpt`` via ``restore.load_selected``) and hands them to the method's
``init_from_unimodal(model, weights)`` hook, ``weights = {m: {"encoder": state_dict, "head":
state_dict}}``, before the first epoch of a fresh run. A missing or unfinished reference run is
refused before anything is written, in one line naming the runs and the command that makes them.
"""

from __future__ import annotations

from pathlib import Path

from mmbench.benchmark.config import RunConfig
from mmbench.results import store
from mmbench.results.errors import ConfigError, MMBenchError


def wants_unimodal_init(cfg: RunConfig) -> bool:
    return bool(cfg.method_params.get("init_from_unimodal", False))


def reference_run_name(modality: str, suffix: str = "") -> str:
    return f"unimodal-{modality}" + (f"_{suffix}" if suffix else "")


def _problem(run_dir: Path, cfg: RunConfig, modality: str) -> str | None:
    """Why ``run_dir`` is not a usable reference run for ``modality`` (None if it is)."""
    result = store.read_json(run_dir / store.RESULT)
    config = store.read_json(run_dir / store.CONFIG)
    if result is None or config is None:
        return "missing"
    if result.get("status") != "finished":
        return f"status {result.get('status')!r}"
    if result.get("method") != "unimodal" or config.get("method_params", {}).get("modality") != modality:
        return f"not a unimodal {modality} run"
    if config.get("data", {}).get("preset") != cfg.data.preset:
        return f"data preset {config.get('data', {}).get('preset')!r}, not {cfg.data.preset!r}"
    if (result.get("checkpoints") or {}).get(result.get("reported_rule", "val"), {}).get("file") is None:
        return "no best.ckpt for its selected epoch"
    return None


def find_references(cfg: RunConfig, results_root, modalities) -> dict[str, Path]:
    """The reference run directory of each modality; ``ConfigError`` naming every unusable one."""
    suffix = str(cfg.method_params.get("unimodal_suffix", "") or "")
    runs = {
        m: store.run_dir(results_root, cfg.dataset, reference_run_name(m, suffix), cfg.seed) for m in modalities
    }
    bad = {m: why for m, d in runs.items() if (why := _problem(d, cfg, m))}
    if bad:
        names = ", ".join(f"{runs[m]} ({why})" for m, why in bad.items())
        cmds = "; ".join(_make_command(cfg, m, suffix, results_root) for m in bad)
        raise ConfigError(
            f"{cfg.method} init_from_unimodal=true needs the unimodal reference runs {names}; make them with: {cmds}"
        )
    return runs


def _make_command(cfg: RunConfig, modality: str, suffix: str, results_root) -> str:
    """The ``mmbench run`` command that trains the missing reference run of ``modality``."""
    parts = [f"mmbench run -d {cfg.dataset} -m unimodal --set method.modality={modality} --seed-start {cfg.seed}"]
    if cfg.data.preset != "paper":
        parts.append(f"--set data.preset={cfg.data.preset}")
    if suffix:
        parts.append(f"--tag {modality}_{suffix}")
    parts.append(f"--results {results_root}")
    return " ".join(parts)


def selected_weights(runs: dict[str, Path], data_root, device="cpu") -> tuple[dict, dict]:
    """``({m: {"encoder", "head"}}, {m: provenance})`` from each run's ``best.ckpt`` at its
    reported rule's epoch (the model as the harness rebuilds it)."""
    from mmbench.benchmark.restore import load_selected

    weights, origin = {}, {}
    for m, run_dir in runs.items():
        result = store.read_json(run_dir / store.RESULT)
        rule = result.get("reported_rule", "val")
        try:
            restored = load_selected(run_dir, rule=rule, device=device, root=data_root)
        except MMBenchError as exc:
            raise ConfigError(f"unimodal reference run {run_dir}: {exc}") from None
        model = restored.model
        weights[m] = {
            "encoder": {k: v.detach().clone() for k, v in model.encoders[m].state_dict().items()},
            "head": {k: v.detach().clone() for k, v in model.heads.fc.state_dict().items()},
        }
        origin[m] = {
            "run": str(run_dir),
            "rule": rule,
            "epoch": restored.epoch,
            "identity": (result.get("identity") or {}).get("hash"),
        }
    return weights, origin
