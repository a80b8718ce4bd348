"""Rank fusion of detectors, chosen on validation: each detector's score becomes its place among the benign
validation scores, and the fused score is the mean place over the members.

The members of a seed's fusion are the ``experiment.fusion_size`` detectors with the best validation AUC-ROC on
that seed; only validation labels are read. A place is the mid-rank share of benign validation scores below the
score (0 to 1), extended above the largest benign score by ``1 + log1p(excess / spread)`` so that rows beyond
every benign one keep their order instead of tying at 1. The same transform needs only each member's benign
validation scores, so a fused model can score new rows (batch or online) the way it scored the test split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from aptray.detectors.thresholds import f1_threshold, percentile_threshold
from aptray.evaluate.metrics import auc_roc, score_metrics, threshold_metrics

if TYPE_CHECKING:
    from aptray.evaluate.runs import ScoreRows
    from aptray.evaluate.splits import Split

#: The detector name fused runs carry in ``metrics.json``.
FUSION = "fusion"
#: What a fusion chooses among: per (embedder, seed), per member name, its (validation, test) scores, in the
#: order of the split's ``val`` and ``test`` rows.
Candidates = dict[tuple[str, int], dict[str, tuple[np.ndarray, np.ndarray]]]


def place(reference: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Each score's place among ``reference`` (benign) scores: the mid-rank share below it, extended above the
    largest reference score (see the module docstring). ``weights``: the row count of each reference score (the
    distinct rows of :class:`aptray.detectors.ensemble.EnsembleDetector`); the share is then of rows."""
    s = np.asarray(scores, dtype=np.float64)
    if len(reference) == 0:
        return s
    if weights is None:
        ref = np.sort(np.asarray(reference, dtype=np.float64))
        u = (np.searchsorted(ref, s, "left") + np.searchsorted(ref, s, "right")) / (2.0 * len(ref))
        middle, std = float(np.median(ref)), float(np.std(ref))
    else:
        order = np.argsort(np.asarray(reference, dtype=np.float64), kind="stable")
        ref = np.asarray(reference, dtype=np.float64)[order]
        w = np.asarray(weights, dtype=np.float64)[order]
        cum = np.r_[0.0, np.cumsum(w)]
        total = cum[-1]
        u = (cum[np.searchsorted(ref, s, "left")] + cum[np.searchsorted(ref, s, "right")]) / (2.0 * total)
        middle = float(ref[min(np.searchsorted(cum[1:], total / 2.0), len(ref) - 1)])
        mean = float(np.dot(w, ref) / total)
        std = float(np.sqrt(np.dot(w, (ref - mean) ** 2) / total))
    top = ref[-1]
    spread = max(float(top) - middle, std, 1e-12)
    above = s > top
    u[above] = 1.0 + np.log1p((s[above] - top) / spread)
    return np.asarray(u)


#: A fusion member's validation AUC-ROC must be above this.
CHANCE = 0.5


def fuse(scored: dict[str, tuple[np.ndarray, np.ndarray]], y_val: np.ndarray, size: int, top_k: int,
         percentile: float) -> dict[str, Any] | None:
    """The rank fusion of the ``size`` detectors of ``scored`` (name -> (validation, test) scores) with the best
    validation AUC-ROC above chance (0.5: a detector that ranks the validation attacks below the benign rows only
    adds noise); None when fewer than two qualify.

    Returns:
        ``members`` (with their validation AUC-ROC), ``threshold``, ``val`` and ``test`` metrics without the test
        labels (the caller adds them with :func:`fused_test_metrics`), and the fused ``val_scores`` / ``test_scores``.
    """
    y = np.asarray(y_val)
    ranked = []
    for name, (val, _) in scored.items():
        auc = auc_roc(y, val) if 0 < int(y.sum()) < len(y) else float("nan")
        if np.isfinite(auc) and auc > CHANCE:
            ranked.append((auc, name))
    ranked.sort(key=lambda t: (-t[0], t[1]))
    members = ranked[:size]
    if len(members) < 2:
        return None
    benign = y == 0
    val = np.mean([place(scored[n][0][benign], scored[n][0]) for _, n in members], axis=0)
    test = np.mean([place(scored[n][0][benign], scored[n][1]) for _, n in members], axis=0)
    if 0 < int(y.sum()) < len(y):
        threshold, _ = f1_threshold(val, y)
        method = "f1_validation"
    else:
        threshold, method = percentile_threshold(val[benign], percentile), f"percentile_{percentile:g}"
    return {"members": {n: round(float(a), 6) for a, n in members}, "threshold": {"value": float(threshold),
            "method": method}, "val": score_metrics(y, val, top_k), "val_scores": val, "test_scores": test}


def fused_test_metrics(fused: dict[str, Any], y_test: np.ndarray, top_k: int) -> dict[str, Any]:
    """The fused run's test metrics (the only place the test labels are read)."""
    s = fused["test_scores"]
    return {**score_metrics(y_test, s, top_k), **threshold_metrics(y_test, s, fused["threshold"]["value"])}


def fused_run(key: dict[str, Any], split: Split, y: np.ndarray, fused: dict[str, Any], top_k: int,
              scores: ScoreRows) -> dict[str, Any]:
    """A fused run's ``metrics.json`` record (``key`` plus the split's counts, members, threshold, validation and
    test metrics); its validation and test scores go to ``scores``."""
    scores.add(key, "test", split.test, fused["test_scores"])
    scores.add(key, "val", split.val, fused["val_scores"])
    return {**key, "rows": split.counts(y), "status": "ok", "error": None, "history": None,
            "members": fused["members"], "threshold": fused["threshold"], "train_seconds": 0.0,
            "val": fused["val"], "test": fused_test_metrics(fused, y[split.test], top_k)}
