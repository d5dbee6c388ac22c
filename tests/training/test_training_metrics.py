"""Evaluation metrics against hand computations on a known confusion matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rcm_viewer.training.evaluation import render_markdown, write_plots
from rcm_viewer.training.metrics import (
    classification_metrics,
    expected_calibration_error,
    per_class_rates,
    roc_auc,
    wilson_interval,
)

#: rows true, columns predicted: 3 classes, 30 mosaics
MATRIX = np.array([[8, 1, 1], [2, 6, 2], [0, 1, 9]])


def _from_matrix(matrix: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Labels and one-hot-ish probabilities that reproduce ``matrix``."""
    true, probs = [], []
    for i in range(3):
        for j in range(3):
            for _ in range(matrix[i, j]):
                p = np.full(3, 0.1)
                p[j] = 0.8
                true.append(i)
                probs.append(p)
    return true, np.array(probs)


def test_wilson_interval_matches_the_formula():
    lo, hi = wilson_interval(8, 10)
    # hand: p=0.8, z=1.96: centre (0.8 + 0.19208)/1.38415 = 0.71681,
    # half 1.96*sqrt(0.016 + 0.0096040)/1.38415 = 0.22657
    assert lo == pytest.approx(0.4902, abs=1e-3)
    assert hi == pytest.approx(0.9433, abs=1e-3)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    assert wilson_interval(10, 10)[1] == 1.0


def test_sensitivity_specificity_by_hand():
    rates = per_class_rates(MATRIX)
    # class 0: TP 8, FN 2, FP 2 (2 + 0), TN 30 - 12 = 18
    assert (rates[0]["tp"], rates[0]["fn"], rates[0]["fp"], rates[0]["tn"]) == (8, 2, 2, 18)
    assert rates[0]["sensitivity"] == pytest.approx(0.8)
    assert rates[0]["specificity"] == pytest.approx(18 / 20)
    # class 1: TP 6, FN 4, FP 2, TN 18
    assert rates[1]["sensitivity"] == pytest.approx(0.6)
    assert rates[1]["specificity"] == pytest.approx(18 / 20)
    # class 2: TP 9, FN 1, FP 3, TN 17
    assert rates[2]["specificity"] == pytest.approx(17 / 20)
    assert rates[2]["sensitivity_ci95"] == pytest.approx(list(wilson_interval(9, 10)))


def test_classification_metrics_summary():
    true, probs = _from_matrix(MATRIX)
    m = classification_metrics(true, probs, ["melanoma", "bcc", "naevus"])
    assert m["confusion_matrix"] == MATRIX.tolist()
    assert m["accuracy"] == pytest.approx(23 / 30)
    assert m["balanced_accuracy"] == pytest.approx((0.8 + 0.6 + 0.9) / 3)
    # every mosaic has confidence 0.8 -> one bin, |accuracy - 0.8|
    assert m["expected_calibration_error"] == pytest.approx(abs(23 / 30 - 0.8))
    assert sum(b["count"] for b in m["reliability"]) == 30
    assert len(m["reliability"]) == 15
    markdown = render_markdown(m)
    assert "0.767" in markdown and "| melanoma | 10 |" in markdown


def test_roc_auc_hand_cases():
    labels = np.array([1, 1, 0, 0], dtype=bool)
    assert roc_auc(labels, np.array([0.9, 0.8, 0.3, 0.1])) == 1.0
    assert roc_auc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 0.0
    # one inversion out of 4 pairs -> 0.75; a tie counts half
    assert roc_auc(labels, np.array([0.9, 0.3, 0.5, 0.1])) == pytest.approx(0.75)
    assert roc_auc(labels, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    assert math.isnan(roc_auc(np.array([1, 1], dtype=bool), np.array([0.2, 0.3])))


def test_ece_two_bins_by_hand():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.55, 0.45]])
    true = [0, 1, 0, 0]
    ece, _ = expected_calibration_error(probs, true)
    # bin of 0.95: accuracy 0.5 -> 0.45; bin of 0.55: accuracy 1 -> 0.45; each half the data
    assert ece == pytest.approx(0.45)


def test_plots_are_written(tmp_path):
    true, probs = _from_matrix(MATRIX)
    m = classification_metrics(true, probs, ["melanoma", "bcc", "naevus"])
    paths = write_plots(tmp_path, m, true, probs, ["melanoma", "bcc", "naevus"])
    assert [p.name for p in paths] == ["roc.png", "reliability.png", "confusion.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_temperature_fit_recovers_a_known_temperature():
    import torch

    from rcm_viewer.training import fit_temperature

    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(2000, 3)) * 2
    probs = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in probs])
    # the model is over-confident by a factor 3: the fit should find T close to 3
    t = fit_temperature(true_logits * 3, labels)
    assert t == pytest.approx(3.0, rel=0.15)
    assert torch.get_num_threads() >= 1
