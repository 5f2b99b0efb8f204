"""The registry of datasets (``DATASETS``, a ``mmbench.results.registry.Registry``).

Each built-in dataset module registers its ``DatasetSpec`` with ``register_dataset`` when
imported; ``BUILTIN_DATASETS`` maps names to modules, so a name is found (or a typo refused)
without importing torch. Third-party packages expose a spec (or a zero-argument factory) in the
entry-point group ``mmbench.datasets``; a broken one is recorded with its package and version.
"""

from __future__ import annotations

from mmbench.results.registry import Registry, qualified

DATASET_ENTRY_POINT = "mmbench.datasets"

BUILTIN_DATASETS = {
    "cremad": "mmbench.datasets.cremad",
    "kinetics_sounds": "mmbench.datasets.kinetics_sounds",
    "mfeat": "mmbench.datasets.mfeat",
    "mfeat3": "mmbench.datasets.mfeat",
    "nvgesture": "mmbench.datasets.nvgesture",
    "sarcasm": "mmbench.datasets.sarcasm",
    "twitter15": "mmbench.datasets.twitter15",
    "vggsound": "mmbench.datasets.vggsound",
}


def _instance(spec):
    """A spec, or a spec class or zero-argument factory returning one, as the spec."""
    return spec() if isinstance(spec, type) or (callable(spec) and not hasattr(spec, "name")) else spec


DATASETS: Registry = Registry(
    "dataset",
    entry_point=DATASET_ENTRY_POINT,
    builtins=BUILTIN_DATASETS,
    prepare=_instance,
    # the same spec class again (a re-imported module, a second instance such as mfeat's)
    # replaces it; another class under a taken name is refused
    same=lambda a, b: qualified(a) == qualified(b),
)


def register_dataset(spec):
    """Register a ``DatasetSpec`` instance (or a zero-argument factory returning one); returns
    the spec. A name already taken by another spec class is refused (``ValueError``)."""
    spec = _instance(spec)
    DATASETS.register(spec)
    return spec
