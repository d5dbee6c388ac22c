"""Mosaic-level evaluation metrics (numpy only, no scikit-learn).

Why hand-written: the formulas are short, the suite checks them against a hand
computation, and the app need not ship scikit-learn. Conventions follow the clinical
literature: sensitivity and specificity are one-vs-rest per class, with 95% Wilson score
intervals (they stay inside 0-1 and behave at the small counts a clinic's test split has).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from rcm_viewer.stats import wilson_interval

ECE_BINS = 15


def confusion_matrix(true: Sequence[int], predicted: Sequence[int], n_classes: int) -> np.ndarray:
    """``m[i, j]`` = mosaics of true class i predicted as class j."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    for t, p in zip(true, predicted, strict=True):
        m[int(t), int(p)] += 1
    return m


def per_class_rates(matrix: np.ndarray) -> list[dict[str, Any]]:
    """One-vs-rest sensitivity and specificity of each class with Wilson intervals."""
    m = np.asarray(matrix, dtype=np.int64)
    total = int(m.sum())
    out = []
    for k in range(m.shape[0]):
        tp = int(m[k, k])
        fn = int(m[k].sum()) - tp
        fp = int(m[:, k].sum()) - tp
        tn = total - tp - fn - fp
        positives, negatives = tp + fn, tn + fp
        out.append(
            {
                "tp": tp,
                "fn": fn,
                "fp": fp,
                "tn": tn,
                "sensitivity": tp / positives if positives else math.nan,
                "sensitivity_ci95": list(wilson_interval(tp, positives)),
                "specificity": tn / negatives if negatives else math.nan,
                "specificity_ci95": list(wilson_interval(tn, negatives)),
            }
        )
    return out


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates over all thresholds (ties form one step)."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = np.cumsum(~y)[distinct]
    p, n = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fps / n], np.r_[0.0, tps / p]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney: ties count half); nan with one class only."""
    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        return math.nan
    fpr, tpr = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def expected_calibration_error(
    probabilities: np.ndarray, true: Sequence[int], bins: int = ECE_BINS
) -> tuple[float, list[dict[str, float]]]:
    """ECE of the top-class confidence in ``bins`` equal-width bins, and the bins.

    ECE = sum over bins of (share of mosaics in the bin) x |accuracy - mean confidence|.
    Bins are (lo, hi], the first one [0, hi], as in Guo et al. 2017.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    true = np.asarray(true, dtype=np.int64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == true
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    ece, table = 0.0, []
    n = len(true)
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        row = {
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "count": count,
            "accuracy": math.nan,
            "confidence": math.nan,
        }
        if count:
            row["accuracy"] = float(correct[members].mean())
            row["confidence"] = float(confidence[members].mean())
            ece += count / n * abs(row["accuracy"] - row["confidence"])
        table.append(row)
    return float(ece), table


def nan_to_none(value: Any) -> Any:
    """JSON has no NaN: turn them into null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nan_to_none(v) for v in value]
    return value


def classification_metrics(
    true: Sequence[int], probabilities: np.ndarray, class_ids: Sequence[str]
) -> dict[str, Any]:
    """Everything the evaluation report shows, from true classes and mosaic probabilities."""
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1, len(class_ids))
    true = np.asarray(true, dtype=np.int64)
    predicted = probabilities.argmax(axis=1) if len(true) else np.zeros(0, dtype=np.int64)
    matrix = confusion_matrix(true, predicted, len(class_ids))
    n = int(matrix.sum())
    correct = int(np.trace(matrix))
    rates = per_class_rates(matrix)
    sensitivities = [r["sensitivity"] for r in rates if not math.isnan(r["sensitivity"])]
    per_class = {}
    for k, class_id in enumerate(class_ids):
        auc = roc_auc(true == k, probabilities[:, k]) if n else math.nan
        per_class[class_id] = {"n": int(matrix[k].sum()), **rates[k], "roc_auc": auc}
    aucs = [v["roc_auc"] for v in per_class.values() if not math.isnan(v["roc_auc"])]
    ece, bins = expected_calibration_error(probabilities, true) if n else (math.nan, [])
    return {
        "n": n,
        "class_ids": list(class_ids),
        "accuracy": correct / n if n else math.nan,
        "accuracy_ci95": list(wilson_interval(correct, n)),
        "balanced_accuracy": float(np.mean(sensitivities)) if sensitivities else math.nan,
        "macro_roc_auc": float(np.mean(aucs)) if aucs else math.nan,
        "expected_calibration_error": ece,
        "ece_bins": ECE_BINS,
        "reliability": bins,
        "confusion_matrix": matrix.tolist(),
        "per_class": per_class,
    }
