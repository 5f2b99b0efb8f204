"""Provenance of a run: the environment it computed in, and whether its numbers are exact.

``environment(device)`` goes into ``config.json`` once (at the first start) and, with the start's
kind and speed-only settings, into one ``runlog.jsonl`` line per start or resume
(``runlog_entry``): time, host, device, torch threads, package versions, git SHA and dirty flag.

``reproducibility(device)`` says whether a rerun of the same config gives bit-identical metrics:
on CPU yes (a fixed ``train.threads``, deterministic kernels); on CUDA only with cuDNN's
deterministic mode and ``torch.use_deterministic_algorithms`` on, and the record says which.
"""

from __future__ import annotations

import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

import torch

import mmbench

PACKAGES = ("torch", "numpy", "scikit-learn", "soundfile", "pillow", "torchvision", "transformers")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=Path(mmbench.__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state() -> dict:
    """``{"sha", "dirty"}`` of the checkout mmbench runs from (None, None outside a checkout);
    dirty = tracked files differ from the commit."""
    sha = _git("rev-parse", "HEAD")
    if not sha:
        return {"sha": None, "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha.strip(), "dirty": bool(status and status.strip())}


def package_versions() -> dict:
    out = {"mmbench": mmbench.__version__}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def environment(device: torch.device) -> dict:
    git = git_state()
    return {
        "mmbench": mmbench.__version__,
        "git_sha": git["sha"],
        "git_dirty": git["dirty"],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine()),
        "python": platform.python_version(),
        # CPU results depend on the thread count in the last bits (reduction order): train.threads
        "torch_threads": torch.get_num_threads(),
        "host": platform.node(),
        "packages": package_versions(),
    }


def reproducibility(device: torch.device) -> dict:
    """``{"bitwise": bool, "why": str}``: can a rerun of this config reproduce its metrics exactly?"""
    if device.type != "cuda":
        return {"bitwise": True, "why": f"CPU with train.threads = {torch.get_num_threads()} thread(s)"}
    cudnn = bool(torch.backends.cudnn.deterministic) and not torch.backends.cudnn.benchmark
    algos = torch.are_deterministic_algorithms_enabled()
    why = f"CUDA: cudnn.deterministic={cudnn}, use_deterministic_algorithms={algos}"
    if not (cudnn and algos):
        why += " (some CUDA kernels are nondeterministic: reruns may differ in the last digits)"
    return {"bitwise": cudnn and algos, "why": why}


def runlog_entry(event: str, start_epoch: int, env: dict, speed: dict) -> dict:
    """One ``runlog.jsonl`` line: ``event`` (start | resume), the first epoch trained, the
    environment and the speed-only settings of this start."""
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "event": event,
        "start_epoch": start_epoch,
        **env,
        "speed_settings": speed,
    }
