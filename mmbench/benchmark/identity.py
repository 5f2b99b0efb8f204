"""Run identity: which resolved settings make two seeds the *same* experiment.

A run is ``(dataset, method, config, seed)`` (docs/records.md). Its identity
is everything that can change its numbers except the seed: the resolved ``train``, ``data`` and
method settings, the protocol and selection tie policy, and the version and origin of the method
and the dataset code. Speed-only settings (``config.speed_keys``: workers, pinning, compile, ...)
and names (tag, device string, the user's overrides as typed, provenance notes) are left out.

``identity_hash`` is the first 16 hex digits of the sha256 of that dict as canonical JSON (sorted
keys, no whitespace). The harness stores it in every record; a finished seed is skipped only when
its stored hash equals the requested one, and tables never average seeds whose hashes differ.
"""

from __future__ import annotations

import copy
import hashlib
import json

from mmbench.benchmark.config import RunConfig, speed_keys

HASH_CHARS = 16
# RunConfig fields that are names or provenance, not settings
_NOT_IDENTITY = ("seed", "device", "tag", "overrides", "sources")


def component_info(kind: str, name: str) -> dict:
    """``{"name", "version", "origin"}`` of a registered method or dataset. ``version`` is the
    class's (or spec's) ``version`` attribute, bumped when its computation changes; ``origin`` is
    ``"builtin"`` or ``"<distribution> <version>"`` of the plugin package that provides it."""
    from mmbench.benchmark import registry

    if kind == "method":
        obj = registry.get_method(name)
        builtin = name in registry.builtin_method_names()
        origin = "builtin" if builtin else registry.method_origin(name)
    elif kind == "dataset":
        obj = registry.get_dataset(name)
        module = type(obj).__module__
        builtin = module.startswith("mmbench.")
        origin = "builtin" if builtin else registry.dataset_origin(name)
    else:
        raise ValueError(f"unknown component kind {kind!r}")
    return {"name": name, "version": str(getattr(obj, "version", "1")), "origin": origin}


def run_components(cfg: RunConfig) -> dict:
    """``{"method": component_info(...), "dataset": component_info(...)}`` of a run."""
    return {"method": component_info("method", cfg.method), "dataset": component_info("dataset", cfg.dataset)}


def identity_config(cfg: RunConfig, components: dict | None = None) -> dict:
    """The resolved settings that define the experiment (everything but the seed and speed-only
    keys), with the method's and dataset's ``component_info`` (looked up when not given)."""
    d = cfg.to_dict()
    for key in _NOT_IDENTITY:
        d.pop(key, None)
    for dotted in speed_keys(cfg.method, cfg.method_params):
        section, name = dotted.split(".")
        d.get(section, {}).pop(name, None)
    if not d.get("data", {}).get("cv_folds"):
        d.get("data", {}).pop("cv_folds", None)  # off: absent, so hashes from before the key hold
    if components is None:
        components = run_components(cfg)
    d["components"] = copy.deepcopy(components)
    return d


def hash_identity(identity: dict) -> str:
    """16 hex digits of the sha256 of ``identity`` as canonical JSON."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def identity_hash(cfg: RunConfig, components: dict | None = None) -> str:
    """The identity hash of a resolved run config."""
    return hash_identity(identity_config(cfg, components))


def _flatten(d, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def differing_keys(a: dict, b: dict) -> list[str]:
    """Dotted keys whose values differ between two identity dicts (present in one only counts)."""
    fa, fb = _flatten(a), _flatten(b)
    return sorted(k for k in set(fa) | set(fb) if fa.get(k, _MISSING) != fb.get(k, _MISSING))


_MISSING = object()
