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

Teachers (``Method.needs_unimodal_teachers``, e.g. UMT): the same lookup is mandatory for such a
method and runs on every start *and resume* (teachers are not part of the checkpoint). The
harness hands ``Method.set_teachers`` frozen copies of the dataset's encoders holding the
references' selected weights (eval mode, ``requires_grad`` False, on the run's device, outside
``model``), and records their provenance as ``teachers_from`` in the checkpoint and the record;
a resume whose references changed since the run started is refused.

Which run is the reference of modality m: with ``method.unimodal_suffix`` set, ``unimodal-<m>_
<suffix>``; otherwise the ``unimodal`` run of m under the same ``--set`` training and data settings
as this run (what a suite listing ``unimodal`` next to the method makes), then ``unimodal-<m>``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mmbench.benchmark.config import RunConfig
from mmbench.results import store
from mmbench.results.errors import ConfigError, MMBenchError


def wants_unimodal_init(cfg: RunConfig) -> bool:
    """Whether a fresh run of ``cfg`` starts from the reference runs (``Method.uses_unimodal_init``)."""
    from mmbench.benchmark.registry import get_method

    return bool(get_method(cfg.method).uses_unimodal_init(cfg.method_params))


def needs_teachers(cfg: RunConfig) -> bool:
    from mmbench.benchmark.registry import get_method

    return bool(getattr(get_method(cfg.method), "needs_unimodal_teachers", False))


def references_for(cfg: RunConfig, results_root, modalities, fresh: bool) -> dict[str, Path] | None:
    """The reference runs this start needs (teachers: always; ``init_from_unimodal``: fresh
    runs only), or None; ``ConfigError`` when one is missing (called before anything is written)."""
    if needs_teachers(cfg):
        return find_references(cfg, results_root, modalities, why="needs its teachers,")
    if fresh and wants_unimodal_init(cfg):
        return find_references(cfg, results_root, modalities)
    return None


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


def _candidate_names(cfg: RunConfig, modality: str, suffix: str) -> list[str]:
    """Run names that may hold the reference of ``modality``, in order of preference."""
    if suffix:
        return [reference_run_name(modality, suffix)]
    names = []
    shared = {k: v for k, v in (cfg.overrides or {}).items() if not k.startswith("method.") and k != "protocol"}
    if shared:
        from mmbench.benchmark.config import resolve_config

        try:
            same = resolve_config(cfg.dataset, "unimodal", {**shared, "method.modality": modality}, seed=cfg.seed)
            names.append(same.run_name)
        except ConfigError:
            pass
    plain = reference_run_name(modality)
    return names + [plain] if plain not in names else names


def find_references(
    cfg: RunConfig, results_root, modalities, why: str = "init_from_unimodal=true needs"
) -> dict[str, Path]:
    """The reference run directory of each modality; ``ConfigError`` naming every unusable one."""
    suffix = str(cfg.method_params.get("unimodal_suffix", "") or "")
    runs, bad = {}, {}
    for m in modalities:
        dirs = [store.run_dir(results_root, cfg.dataset, n, cfg.seed) for n in _candidate_names(cfg, m, suffix)]
        usable = [d for d in dirs if _problem(d, cfg, m) is None]
        if usable:
            runs[m] = usable[0]
        else:
            runs[m] = dirs[-1]
            bad[m] = _problem(dirs[-1], cfg, m)
    if bad:
        names = ", ".join(f"{runs[m]} ({why_})" for m, why_ in bad.items())
        cmds = "; ".join(_make_command(cfg, m, suffix, results_root) for m in bad)
        raise ConfigError(f"{cfg.method} {why} the unimodal reference runs {names}; make them with: {cmds}")
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


def attach_references(run, cfg: RunConfig, spec, references, ckpt, data_root) -> tuple[dict | None, dict | None]:
    """Hand the reference runs' weights to the method of a built ``run``: ``init_from_unimodal`` on
    a fresh run whose method ``starts_from_unimodal()``, ``set_teachers`` on every start of a
    ``needs_unimodal_teachers`` method. Returns ``(initialised_from, teachers_from)`` for the
    checkpoint and the record (a resume keeps the checkpoint's)."""
    initialised_from = ckpt.get("initialised_from") if ckpt is not None else None
    teachers_from = ckpt.get("teachers_from") if ckpt is not None else None
    if references is None:
        return initialised_from, teachers_from
    weights, origin = selected_weights(references, data_root)
    method = run.method
    if ckpt is None and method.starts_from_unimodal():
        method.init_from_unimodal(run.model, weights)
        initialised_from = origin
    if getattr(method, "needs_unimodal_teachers", False):
        if teachers_from is not None:
            _refuse_changed_teachers(teachers_from, origin)
        method.set_teachers(frozen_teachers(spec, cfg, weights, run.ctx.device))
        method.set_teacher_heads(frozen_heads(weights, run.ctx.device))
        teachers_from = origin
    return initialised_from, teachers_from


def _refuse_changed_teachers(recorded: dict, now: dict) -> None:
    """A resumed run must distil from the teachers it started with."""
    for m, old in recorded.items():
        new = now.get(m, {})
        if (old.get("identity"), old.get("epoch")) != (new.get("identity"), new.get("epoch")):
            raise ConfigError(
                f"the {m} teacher changed since this run started ({old.get('run')} epoch {old.get('epoch')}, "
                f"now {new.get('run')} epoch {new.get('epoch')}); use --rerun to train it again with the new teachers"
            )


def frozen_teachers(spec, cfg: RunConfig, weights: dict, device) -> dict:
    """``{m: encoder}``: the dataset's encoder m built afresh (its initialisation draws on a forked
    CPU generator, so the run's random stream is untouched), loaded with ``weights[m]["encoder"]``,
    moved to ``device``, in eval mode, with ``requires_grad`` False."""
    factories = spec.backbones(cfg.data)
    with torch.random.fork_rng(devices=[]):
        teachers = {m: factories[m][0]() for m in weights}
    for m, teacher in teachers.items():
        teacher.load_state_dict(weights[m]["encoder"])
        teacher.to(device)
        if torch.device(device).type == "cuda" and cfg.train.channels_last:
            from mmbench.benchmark.trainer import apply_channels_last

            apply_channels_last(teacher)
        teacher.eval()
        teacher.requires_grad_(False)
    return teachers


def stand_in_teachers(run) -> dict:
    """Frozen eval-mode copies of ``run``'s own encoders in place of the reference runs' for a
    speed measurement (``mmbench bench``): the teachers' architecture and cost, not their weights."""
    import copy

    return {m: copy.deepcopy(enc).eval().requires_grad_(False) for m, enc in run.model.encoders.items()}
def frozen_heads(weights: dict, device) -> dict:
    """``{m: Linear(d_m, K)}``: the reference runs' linear heads (``weights[m]["head"]``, the
    ``unimodal`` head's ``fc``), on ``device``, in eval mode, with ``requires_grad`` False."""
    heads = {}
    for m, w in weights.items():
        k, d = w["head"]["weight"].shape
        head = torch.nn.Linear(d, k, device="meta").to_empty(device="cpu")
        head.load_state_dict(w["head"])
        heads[m] = head.to(device).eval().requires_grad_(False)
    return heads


def stand_in_teacher_heads(run) -> dict:
    """Frozen fresh ``Linear(d_m, K)`` heads beside ``stand_in_teachers`` (timing only)."""
    method = run.method
    return {
        m: torch.nn.Linear(method.feature_dims[m], method.num_classes).to(run.ctx.device).eval().requires_grad_(False)
        for m in method.active_modalities
    }
