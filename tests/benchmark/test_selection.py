"""specs/methods/evaluation.md §5 and §7: selection rules as pure functions of the history."""

from mmbench.benchmark.selection import select_all, select_epoch


def _history(val, test, selectable=None):
    out = []
    for e, (v, t) in enumerate(zip(val, test)):
        rec = {"epoch": e, "val": {"fusion": {"acc": v}}, "test": {"fusion": {"acc": t}}}
        if selectable is not None:
            rec["selectable"] = selectable[e]
        out.append(rec)
    return out


H = _history([0.5, 0.7, 0.7, 0.6], [0.55, 0.6, 0.72, 0.74])


def test_val_rule_picks_the_earliest_best_val_epoch():
    assert select_epoch(H, "val") == 1


def test_val_rule_with_last_tie_picks_the_latest_best_val_epoch():
    assert select_epoch(H, "val", tie="last") == 2


def test_last_and_test_best_rules():
    assert select_epoch(H, "last") == 3
    assert select_epoch(H, "test-best") == 3


def test_all_heads_and_metrics_come_from_the_selected_epoch():
    sel = select_all(H)
    assert sel["val"]["epoch"] == 1 and sel["val"]["test"]["fusion"]["acc"] == 0.6
    assert sel["test-best"]["test"]["fusion"]["acc"] == 0.74


def test_unselectable_epochs_are_skipped_except_by_last():
    h = _history([0.9, 0.5, 0.6], [0.9, 0.5, 0.4], selectable=[False, True, True])
    assert select_epoch(h, "val") == 2
    assert select_epoch(h, "test-best") == 1
    assert select_epoch(h, "last") == 2
