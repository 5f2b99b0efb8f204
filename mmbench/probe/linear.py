"""Fit one linear probe on frozen features with ``ProbeRecipe`` (see ``recipe.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmbench.benchmark.metrics import classification_metrics
from mmbench.benchmark.seeding import torch_threads
from mmbench.probe.recipe import DEFAULT_RECIPE, ProbeRecipe


def standardiser(train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of the train features (std < 1e-6 replaced by 1)."""
    mean = train.mean(0)
    std = train.std(0, unbiased=False)
    return mean, torch.where(std < 1e-6, torch.ones_like(std), std)


def _val_acc(weight, bias, x, y) -> float:
    return float(((x @ weight.T + bias).argmax(1) == y).float().mean())


def fit_probe(splits: dict, num_classes: int, recipe: ProbeRecipe = DEFAULT_RECIPE) -> dict:
    """Train a probe on ``splits["train"]`` = ``(features [N, D], labels [N])``, select its epoch on
    ``splits["val"]`` and return ``{"epoch", "val": METRICS, "test": METRICS}`` (metrics of the
    harness's metrics module; ``epoch`` is 0-indexed)."""
    if recipe.optimizer != "adam":
        raise ValueError(f"unknown probe optimizer {recipe.optimizer!r}")
    with torch_threads(recipe.threads):
        return _fit(splits, num_classes, recipe)


def _fit(splits: dict, num_classes: int, recipe: ProbeRecipe) -> dict:
    mean, std = standardiser(splits["train"][0].double())
    xs = {k: ((x.double() - mean) / std).float() for k, (x, _) in splits.items()}
    ys = {k: y.long() for k, (_, y) in splits.items()}
    d = xs["train"].shape[1]
    weight = torch.zeros(num_classes, d, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.Adam([weight, bias], lr=recipe.lr, weight_decay=recipe.weight_decay)
    gen = torch.Generator().manual_seed(recipe.seed)
    n = xs["train"].shape[0]
    best = (-1.0, -1, weight.detach().clone(), bias.detach().clone())
    for epoch in range(recipe.epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, recipe.batch_size):
            idx = order[start : start + recipe.batch_size]
            loss = F.cross_entropy(xs["train"][idx] @ weight.T + bias, ys["train"][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = _val_acc(weight, bias, xs["val"], ys["val"])
        if acc > best[0]:
            best = (acc, epoch, weight.detach().clone(), bias.detach().clone())
    _, epoch, w, b = best
    out = {"epoch": epoch}
    for split in ("val", "test"):
        out[split] = classification_metrics(xs[split] @ w.T + b, ys[split])
    return out
