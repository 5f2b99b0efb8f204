"""The stratified carve gives every class with at least two items a validation item; carves where
every class already rounds to one or more are unchanged."""

from __future__ import annotations

import numpy as np

from mmbench.datasets.base import stratified_carve


def test_a_small_tree_gets_a_val_item_in_every_class_with_two_or_more():
    labels = np.repeat(np.arange(6), 5)  # 30 clips: 5 * 0.1 rounds to 0 for every class
    kept, carved = stratified_carve(labels, 0.1, 0)
    assert np.bincount(labels[carved], minlength=6).tolist() == [1] * 6
    assert sorted(kept + carved) == list(range(30))
    single = stratified_carve([0, 1, 1], 0.1, 0)  # a class of one keeps its item
    assert single[1] and all(i in (1, 2) for i in single[1]) and 0 in single[0]
    assert stratified_carve(labels, 0.0, 0) == (list(range(30)), [])  # fraction 0: no val split


def test_carves_that_already_gave_every_class_a_val_item_are_unchanged():
    # the carve before the at-least-one rule, recomputed (every class rounds to >= 1 here)
    counts = [973, 1148, 1131, 1138, 1142, 1166]
    labels = np.repeat(np.arange(6), counts)
    kept, carved = stratified_carve(labels, 0.1, 0)
    assert np.bincount(labels[carved]).tolist() == [97, 115, 113, 114, 114, 117]
    rng = np.random.default_rng(0)  # the carve's own draws, in its order: one permutation per class
    expected = []
    for c in range(6):
        rows = np.nonzero(labels == c)[0]
        expected += rng.permutation(rows)[: int(np.floor(len(rows) * 0.1 + 0.5))].tolist()
    assert carved == sorted(expected)
