"""Thresholds: benign percentiles, F1-optimal cut (checked against brute force), tiers."""

from __future__ import annotations

import numpy as np
import pytest

from aptray.detectors.thresholds import assign_tiers, f1_threshold, percentile_threshold, tier_thresholds


def _brute_f1(scores: np.ndarray, y: np.ndarray) -> float:
    best = 0.0
    for t in np.unique(scores):
        p = scores >= t
        tp = int((p & (y == 1)).sum())
        f1 = 2 * tp / (p.sum() + y.sum())
        best = max(best, f1)
    return best


def test_percentile() -> None:
    s = np.arange(101, dtype=float)
    assert percentile_threshold(s, 95) == pytest.approx(95.0)
    with pytest.raises(ValueError):
        percentile_threshold(np.array([]), 99)


@pytest.mark.parametrize("seed", range(5))
def test_f1_threshold_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(300) < 0.1).astype(int)
    scores = np.round(rng.normal(size=300) + 1.5 * y, 1)  # rounded: ties exercise the run handling
    t, f1 = f1_threshold(scores, y)
    assert f1 == pytest.approx(_brute_f1(scores, y))
    pred = scores >= t
    assert 2 * (pred & (y == 1)).sum() / (pred.sum() + y.sum()) == pytest.approx(f1)


def test_f1_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both"):
        f1_threshold(np.array([0.1, 0.2]), np.array([0, 0]))


def test_tiers() -> None:
    s = np.arange(1000, dtype=float)
    tiers = tier_thresholds(s, {"low": 90, "medium": 99, "high": 99.9})
    assert tiers["low"] < tiers["medium"] < tiers["high"]
    assert assign_tiers(np.array([0.0, 950.0, 995.0, 999.5]), tiers) == [None, "low", "medium", "high"]


def test_tiers_that_coincide_keep_benign_scores_in_the_lower_one() -> None:
    """Many benign rows share the top score (one frequent sentence): the 99th and 99.9th percentiles coincide, and
    every alert, a benign training sentence scored again included, read "high"."""
    benign = np.r_[np.arange(900, dtype=float), np.full(100, 950.0)]
    tiers = tier_thresholds(benign, {"low": 90, "medium": 99, "high": 99.9})
    assert tiers["medium"] == tiers["high"] == 950.0 > tiers["low"]
    assert assign_tiers(np.array([910.0, 950.0, 950.1]), tiers) == ["low", "medium", "high"]
    assert assign_tiers(np.array([5.0, 6.0]), {"low": 5.0, "medium": 5.0, "high": 5.0}) == ["low", "high"]


def test_a_loaded_artifact_keeps_its_tiers_least_severe_first() -> None:
    """config.json stores the tiers with sorted keys (high, low, medium): read in that order, a loaded artifact
    named "medium" the alerts that training and ``aptray run`` named "high"."""
    from aptray.detectors.thresholds import by_severity

    stored = {"high": 5.0, "low": 3.0, "medium": 5.0}
    for percentiles in ({"high": 99.9, "low": 95.0, "medium": 99.0}, None):
        tiers = by_severity(stored, percentiles)
        assert list(tiers) == ["low", "medium", "high"]
        assert assign_tiers(np.array([4.0, 5.0, 6.0]), tiers) == ["low", "medium", "high"]
    assert list(by_severity({"zeta": 1.0, "high": 9.0, "alpha": 2.0}, None)) == ["high", "zeta", "alpha"]
    assert list(tier_thresholds(np.arange(100.0), {"b": 99.0, "a": 90.0})) == ["a", "b"]
