"""Selection rules: pure functions of the epoch history.

``val`` (default) picks the epoch with the highest fusion val Acc (ties: earliest, or latest with
``tie="last"``, which is AUG's ``>=``); ``last`` the final epoch; ``test-best`` the highest fusion
test Acc — the papers' protocol, stored only to compare with published numbers. Epochs whose
record says ``"selectable": false`` (e.g. ReconBoost inside a stage) are skipped by every rule
except ``last``. All heads and metrics come from the one selected epoch. A run without a
validation split (``val: null`` in every record, ``protocol = "official"``) has no ``val`` rule.
"""

from __future__ import annotations

SELECTION_RULES = ("val", "last", "test-best")


def _best(history: list[dict], split: str, tie: str) -> int | None:
    best_epoch, best_acc = None, None
    for rec in history:
        if not rec.get("selectable", True) or rec.get(split) is None:
            continue
        acc = rec[split]["fusion"]["acc"]
        if best_acc is None or acc > best_acc or (tie == "last" and acc == best_acc):
            best_epoch, best_acc = rec["epoch"], acc
    return best_epoch


def select_epoch(history: list[dict], rule: str, tie: str = "first") -> int | None:
    """The selected epoch of ``rule`` over ``history`` (a list of history.jsonl records)."""
    if rule not in SELECTION_RULES:
        raise ValueError(f"unknown selection rule {rule!r}; choose one of {', '.join(SELECTION_RULES)}")
    if tie not in ("first", "last"):
        raise ValueError(f"unknown tie policy {tie!r}; choose 'first' or 'last'")
    if not history:
        return None
    if rule == "last":
        return history[-1]["epoch"]
    if rule == "val" and all(rec.get("val") is None for rec in history):
        return None  # no validation split (data.val_fraction = 0, protocol = "official")
    if rule == "test-best" and all(rec.get("test") is None for rec in history):
        return None  # test not evaluated (train.eval_test = false: tuning trial runs)
    chosen = _best(history, "val" if rule == "val" else "test", tie if rule == "val" else "first")
    return chosen if chosen is not None else history[-1]["epoch"]


def select_all(history: list[dict], tie: str = "first") -> dict[str, dict]:
    """``result.json``'s ``selection`` block: rule -> {"epoch", "val", "test"}."""
    by_epoch = {rec["epoch"]: rec for rec in history}
    out = {}
    for rule in SELECTION_RULES:
        e = select_epoch(history, rule, tie)
        if e is not None:
            out[rule] = {"epoch": e, "val": by_epoch[e]["val"], "test": by_epoch[e]["test"]}
    return out
