"""AP, AUC, d' in numpy: against brute-force definitions, against scikit-learn when installed, ties,
classes without positives."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from audiosetdl.labels import metrics


def brute_ap(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the step precision-recall curve, threshold by threshold (ties are one threshold)."""
    total, previous_recall = 0.0, 0.0
    for threshold in np.unique(scores)[::-1]:
        chosen = scores >= threshold
        true_positives = np.count_nonzero(chosen & labels)
        recall = true_positives / labels.sum()
        total += (recall - previous_recall) * true_positives / chosen.sum()
        previous_recall = recall
    return total


def brute_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting one half."""
    pos, neg = scores[labels], scores[~labels]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


def random_case(seed: int, n: int = 300, classes: int = 12, decimals: int | None = None):
    rng = np.random.default_rng(seed)
    labels = rng.random((n, classes)) < rng.uniform(0.02, 0.4, classes)
    labels[0] = True  # every class has a positive ...
    labels[1] = False  # ... and a negative
    scores = rng.random((n, classes)) + 0.7 * labels
    if decimals is not None:  # many ties
        scores = np.round(scores, decimals)
    return labels, scores


@pytest.mark.parametrize("seed,decimals", [(0, None), (1, 1), (2, 2), (3, 0)])
def test_ap_and_auc_match_brute_force(seed, decimals):
    labels, scores = random_case(seed, decimals=decimals)
    ap, auc = metrics.average_precision(labels, scores), metrics.roc_auc(labels, scores)
    for c in range(labels.shape[1]):
        assert ap[c] == pytest.approx(brute_ap(labels[:, c], scores[:, c]), abs=1e-12)
        assert auc[c] == pytest.approx(brute_auc(labels[:, c], scores[:, c]), abs=1e-12)


@pytest.mark.parametrize("seed,decimals", [(4, None), (5, 1), (6, 3)])
def test_ap_and_auc_match_sklearn(seed, decimals):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    labels, scores = random_case(seed, n=500, classes=20, decimals=decimals)
    result = metrics.compute(labels, scores, chunk=7)  # chunks that do not divide the classes
    expected_ap = sklearn_metrics.average_precision_score(labels, scores, average=None)
    expected_auc = sklearn_metrics.roc_auc_score(labels, scores, average=None)
    np.testing.assert_allclose(result.ap, expected_ap, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.auc, expected_auc, rtol=0, atol=1e-12)
    assert result.mean_ap == pytest.approx(sklearn_metrics.average_precision_score(labels, scores, average="macro"))


def test_perfect_inverted_and_constant_scores():
    labels = np.array([1, 1, 0, 0, 0], bool)
    assert metrics.average_precision(labels, np.array([5, 4, 3, 2, 1.0]))[0] == 1.0
    assert metrics.roc_auc(labels, np.array([5, 4, 3, 2, 1.0]))[0] == 1.0
    assert metrics.roc_auc(labels, np.array([1, 2, 3, 4, 5.0]))[0] == 0.0
    assert metrics.roc_auc(labels, np.zeros(5))[0] == 0.5  # one tie group
    assert metrics.average_precision(labels, np.zeros(5))[0] == pytest.approx(2 / 5)  # the prevalence


def test_classes_without_positives_are_left_out_of_the_means():
    labels, scores = random_case(7, classes=5)
    labels[:, 2] = False
    result = metrics.compute(labels, scores)
    assert np.isnan(result.ap[2]) and np.isnan(result.auc[2])
    assert result.classes_present == 4
    assert result.mean_ap == pytest.approx(np.mean(np.delete(result.ap, 2)))
    assert result.positives[2] == 0 and result.positives[0] == labels[:, 0].sum()


def test_d_prime():
    assert metrics.d_prime(0.5) == 0.0
    assert metrics.d_prime(NormalDist().cdf(1 / np.sqrt(2))) == pytest.approx(1.0)
    assert metrics.d_prime(0.959) == pytest.approx(2.452, abs=0.01)  # Google's baseline (AUC rounded to 0.959)
    assert metrics.d_prime(1.0) == float("inf")


def test_bad_shapes_and_nan_are_refused():
    with pytest.raises(ValueError, match="must both be"):
        metrics.compute(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        metrics.compute(np.ones((2, 1)), np.array([[np.nan], [0.0]]))
