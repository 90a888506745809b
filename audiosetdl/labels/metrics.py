"""Multi-label metrics of AudioSet classifiers, in numpy: per-class AP and ROC AUC, mAP, d'.

Conventions are those of the published AudioSet figures (and scikit-learn's definitions, which a
test checks these against):

- AP of a class is the area under its step precision-recall curve: tied scores form one
  threshold, so each positive counts the precision at the *end* of its group of tied scores
  (scikit-learn's `average_precision_score`).
- AUC is the Mann-Whitney statistic with tied scores counting one half (= the trapezoidal area
  under the ROC curve, scikit-learn's `roc_auc_score`).
- mAP and mean AUC average over the classes that have at least one positive (and, for AUC, one
  negative) in the evaluated set; d' = sqrt(2) * Phi^-1(mean AUC), as Google's baseline reports.

Every function takes `labels` (N, C) of 0/1 and `scores` (N, C) and works on all classes at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

__all__ = ["Metrics", "average_precision", "compute", "d_prime", "roc_auc"]

_CLASS_CHUNK = 64  # classes per pass in `compute`: bounds the (N, chunk) int64 work arrays


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim == 1:
        labels, scores = labels[:, None], scores.reshape(-1, 1)
    if labels.shape != scores.shape or labels.ndim != 2:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} must both be (N, classes)")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    return labels.astype(bool), scores


def _sorted_groups(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column: the order sorting scores descending, and for each sorted position the first
    and last position of its group of tied scores."""
    n = len(scores)
    order = np.argsort(-scores, axis=0, kind="stable")
    ordered = np.take_along_axis(scores, order, axis=0)
    positions = np.broadcast_to(np.arange(n)[:, None], ordered.shape)
    changes = ordered[1:] != ordered[:-1]  # (n-1, C): a new group starts at i + 1
    is_last = np.vstack([changes, np.ones((1, ordered.shape[1]), bool)])
    is_first = np.vstack([np.ones((1, ordered.shape[1]), bool), changes])
    # the last of a group: the nearest "last" at or after the position (a running minimum from the end)
    last = np.minimum.accumulate(np.where(is_last, positions, n)[::-1], axis=0)[::-1]
    first = np.maximum.accumulate(np.where(is_first, positions, -1), axis=0)
    return order, first, last


def average_precision(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AP of each class (C,); NaN for a class without positives."""
    labels, scores = _check(labels, scores)
    order, _first, last = _sorted_groups(scores)
    hits = np.take_along_axis(labels, order, axis=0)
    true_positives = np.cumsum(hits, axis=0)
    tp_at_end = np.take_along_axis(true_positives, last, axis=0)
    precision_at_end = tp_at_end / (last + 1.0)
    positives = hits.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(positives > 0, (precision_at_end * hits).sum(axis=0) / positives, np.nan)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of each class (C,) from average ranks; NaN for a class lacking positives or negatives."""
    labels, scores = _check(labels, scores)
    order, first, last = _sorted_groups(scores)
    hits = np.take_along_axis(labels, order, axis=0)
    n = len(scores)
    ascending_rank = n - (first + last) / 2.0  # 1-based rank from the bottom, ties averaged
    positives = hits.sum(axis=0)
    negatives = n - positives
    rank_sum = (ascending_rank * hits).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)
    return np.where((positives > 0) & (negatives > 0), auc, np.nan)


def d_prime(auc: float) -> float:
    """sqrt(2) * Phi^-1(AUC): the separation of two unit Gaussians that would give this AUC."""
    if not 0.0 < auc < 1.0:
        return float("inf") if auc >= 1.0 else float("-inf")
    return float(np.sqrt(2.0) * NormalDist().inv_cdf(auc))


@dataclass(frozen=True)
class Metrics:
    """Per-class AP, AUC and positives, and their summaries over the classes present."""

    ap: np.ndarray
    auc: np.ndarray
    positives: np.ndarray

    @property
    def mean_ap(self) -> float:
        return float(np.nanmean(self.ap))

    @property
    def mean_auc(self) -> float:
        return float(np.nanmean(self.auc))

    @property
    def d_prime(self) -> float:
        return d_prime(self.mean_auc)

    @property
    def classes_present(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.ap)))

    def summary(self) -> dict[str, float]:
        return {"mAP": self.mean_ap, "AUC": self.mean_auc, "d_prime": self.d_prime,
                "classes": self.classes_present}


def compute(labels: np.ndarray, scores: np.ndarray, *, chunk: int = _CLASS_CHUNK) -> Metrics:
    """AP, AUC and positives of every class (a few classes at a time, to bound memory)."""
    labels, scores = _check(labels, scores)
    parts = [(average_precision(labels[:, i:i + chunk], scores[:, i:i + chunk]),
              roc_auc(labels[:, i:i + chunk], scores[:, i:i + chunk])) for i in range(0, labels.shape[1], chunk)]
    return Metrics(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), labels.sum(axis=0))
