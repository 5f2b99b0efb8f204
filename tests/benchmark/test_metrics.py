"""specs/methods/evaluation.md §7: the metric cases, exactly."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score

from mmbench.benchmark.metrics import (
    accuracy,
    average_precision,
    classification_metrics,
    macro_f1,
    mean_average_precision,
)

Y = np.array([0, 1, 2, 1])
P = np.array([[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.2, 0.5, 0.3], [0.1, 0.8, 0.1]])


def test_classwise_ap_and_map_match_the_spec_case():
    aps = [average_precision(Y == c, P[:, c]) for c in range(3)]
    assert aps == pytest.approx([1.0, 0.833333, 0.5], abs=1e-6)
    assert mean_average_precision(Y, P) == pytest.approx(0.777778, abs=1e-6)


def test_accuracy_and_macro_f1_match_the_spec_case():
    yhat = P.argmax(1)
    assert list(yhat) == [0, 1, 1, 1]
    assert accuracy(Y, yhat) == 0.75
    assert macro_f1(Y, yhat) == pytest.approx(0.6, abs=1e-6)


def test_tied_scores_form_one_threshold():
    ap = average_precision(np.array([1, 0, 1, 0]) == 1, np.array([0.5, 0.5, 0.9, 0.1]))
    assert ap == pytest.approx(0.833333, abs=1e-6)


def test_macro_f1_uses_labels_present_in_y_or_yhat_only():
    assert macro_f1(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])) == pytest.approx(0.733333, abs=1e-6)


def test_map_of_logits_is_computed_on_softmax_probabilities_not_logits():
    logits = np.array([[3.0, 0.0, 1.0], [0.0, 0.2, 2.0], [-2.0, -2.0, 0.9], [0.0, 4.0, 0.0]])
    y = np.array([0, 1, 2, 1])
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = classification_metrics(logits, y)
    assert m["map"] == pytest.approx(mean_average_precision(y, probs), abs=1e-12)
    # ranking by raw logits differs for class 2 here, so using logits would give another value
    assert m["map"] != pytest.approx(mean_average_precision(y, logits), abs=1e-3)


def test_metrics_agree_with_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 200)
    logits = rng.normal(size=(200, 5)).round(1)  # rounding creates ties
    m = classification_metrics(logits, y)
    z = np.exp(logits - logits.max(1, keepdims=True))
    probs = z / z.sum(1, keepdims=True)
    onehot = np.eye(5)[y]
    assert m["map"] == pytest.approx(average_precision_score(onehot, probs, average="macro"), abs=1e-9)
    assert m["f1"] == pytest.approx(f1_score(y, logits.argmax(1), average="macro"), abs=1e-12)


def test_class_without_positives_counts_as_zero_ap_with_a_warning():
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1]])
    with pytest.warns(UserWarning, match="no positive"):
        assert mean_average_precision(y, probs) == pytest.approx(2 / 3, abs=1e-9)
