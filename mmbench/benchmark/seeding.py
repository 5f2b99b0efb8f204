"""The one seeding helper: python, numpy, torch (CPU and CUDA), cuDNN, DataLoader workers.

Also captures and restores every RNG state, so a resumed run continues the exact random stream
of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random

import numpy as np
import torch


@contextlib.contextmanager
def torch_threads(n: int):
    """Compute with ``n`` intra-op threads inside the block (CPU float reductions, hence metrics,
    depend on the count: ``train.threads`` and the probe recipe fix it); the caller's count is
    restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed every generator the harness and the methods draw from."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def worker_init_fn(worker_id: int) -> None:
    """DataLoader worker seeding: derive python/numpy seeds from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffling generator of one epoch: a pure function of (run seed, epoch), so a resumed
    run shuffles exactly as an uninterrupted one."""
    g = torch.Generator()
    g.manual_seed(seed * 100_003 + epoch)
    return g


def augment_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's batched device-side augmentation (``datasets/device_augment.py``):
    a pure function of (run seed, epoch), a stream apart from the shuffling one."""
    g = torch.Generator()
    g.manual_seed((seed * 100_003 + epoch) ^ 0x5DEECE66D)
    return g


def stream_seed(seed: int, stream: str, index: int) -> int:
    """The 63-bit seed of a method's named random stream at ``index`` (the global step): the first
    8 bytes of ``sha256("<seed>/<stream>/<index>")``. A pure function of its arguments, the same on
    every machine and Python process (unlike ``hash``), and far apart for neighbouring steps."""
    if not stream:
        raise ValueError("a method random stream needs a non-empty name")
    digest = hashlib.sha256(f"{int(seed)}/{stream}/{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def stream_generator(
    seed: int, stream: str, index: int, device="cpu", generator: torch.Generator | None = None
) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``stream_seed(seed, stream, index)``
    (``generator`` is reseeded and returned when given and on that device type, so a caller may
    keep one per stream). Method-owned randomness (dropout masks, execution draws, removal
    orders) drawn from it is a function of (run seed, stream, step) alone: a resumed run draws the
    same numbers as an uninterrupted one, and nothing the method draws moves the global stream."""
    device = torch.device(device)
    if generator is None or generator.device.type != device.type:
        generator = torch.Generator(device=device)
    generator.manual_seed(stream_seed(seed, stream, index))
    return generator


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
