"""Alert thresholds on anomaly scores: benign-score percentiles, the F1-optimal cut, and alert tiers.

Every score here follows the project's direction: higher = more anomalous; a row alerts when its score is
at or above the threshold.
"""

from __future__ import annotations

import numpy as np

#: Default tiers: name -> percentile of benign training scores.
DEFAULT_TIERS: dict[str, float] = {"low": 95.0, "medium": 99.0, "high": 99.9}


def percentile_threshold(scores: np.ndarray, percentile: float, weights: np.ndarray | None = None) -> float:
    """The ``percentile``-th percentile of (benign) scores.

    With ``weights`` (whole row counts of distinct rows), exactly ``np.percentile`` of the scores each repeated
    its count of times (linear interpolation), without building that array.
    """
    s = np.asarray(scores, dtype=np.float64)
    if weights is None:
        if len(s) == 0:
            raise ValueError("cannot set a threshold from zero scores")
        return float(np.percentile(s, percentile))
    w = np.asarray(weights, dtype=np.int64)
    keep = w > 0
    s, w = s[keep], w[keep]
    if len(s) == 0:
        raise ValueError("cannot set a threshold from zero scores")
    order = np.argsort(s, kind="stable")
    s, cum = s[order], np.cumsum(w[order])
    pos = percentile / 100.0 * (int(cum[-1]) - 1)
    lo, hi = int(np.floor(pos)), int(np.ceil(pos))
    a, b = s[np.searchsorted(cum, lo, side="right")], s[np.searchsorted(cum, hi, side="right")]
    return float(a + (b - a) * (pos - lo))


def tier_thresholds(scores: np.ndarray, tiers: dict[str, float], weights: np.ndarray | None = None
                    ) -> dict[str, float]:
    """Each tier's threshold: the tier's percentile of the benign scores (``weights``: row counts), least severe
    (lowest percentile) first, the order :func:`assign_tiers` reads."""
    return {name: percentile_threshold(scores, p, weights) for name, p in sorted(tiers.items(), key=lambda kv: kv[1])}


def by_severity(thresholds: dict[str, float], percentiles: dict[str, float] | None) -> dict[str, float]:
    """Tier thresholds least severe first, by their ``percentiles`` (an artifact's ``config.json`` stores them with
    sorted keys: high, low, medium); without percentiles, :data:`DEFAULT_TIERS`' order, then unknown names by
    threshold."""
    known = percentiles or DEFAULT_TIERS
    return dict(sorted(thresholds.items(), key=lambda kv: (kv[0] not in known, known.get(kv[0], 0.0), kv[1])))


def f1_threshold(scores: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """The threshold maximising F1 of ``score >= threshold`` against labels ``y`` (1 = malicious).

    ``weights``: each entry's row count (distinct rows), as if every entry were repeated that many times.

    Returns:
        ``(threshold, best_f1)``.

    Raises:
        ValueError: ``y`` holds no malicious row or no benign row.
    """
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(y).astype(int)
    w = np.ones(len(s)) if weights is None else np.asarray(weights, dtype=np.float64)
    positives, total = float((w * t).sum()), float(w.sum())
    if positives == 0 or positives == total:
        raise ValueError("an F1 threshold needs both malicious and benign labelled rows")
    order = np.argsort(-s, kind="stable")
    s_sorted, t_sorted, w_sorted = s[order], t[order], w[order]
    # Candidate cuts are the distinct scores; a cut at s_sorted[i] flags every row scoring >= it.
    last_of_run = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    tp = np.cumsum(w_sorted * t_sorted)[last_of_run]
    flagged = np.cumsum(w_sorted)[last_of_run]
    f1 = 2 * tp / (flagged + positives)
    best = int(np.argmax(f1))
    return float(s_sorted[last_of_run][best]), float(f1[best])


def assign_tiers(scores: np.ndarray, tiers: dict[str, float]) -> list[str | None]:
    """For each score, the name of the highest tier whose threshold it reaches (None below all tiers).

    Tiers come least severe first (:data:`DEFAULT_TIERS`). Where a tier's threshold equals a less severe one's
    (many benign rows share the top scores: their percentiles coincide), the more severe tier needs a score above
    it: a benign training sentence scored again lands in the lower tier, and only what scores past it in the
    higher (they all read "high" before).
    """
    names = list(tiers)
    ranked = sorted(tiers.items(), key=lambda kv: (kv[1], names.index(kv[0])), reverse=True)
    strict = {n for k, n in enumerate(names) if tiers[n] in [tiers[m] for m in names[:k]]}  # ties a milder tier
    out: list[str | None] = []
    for s in np.asarray(scores, dtype=np.float64):
        out.append(next((name for name, thr in ranked if s > thr or (s == thr and name not in strict)), None))
    return out
