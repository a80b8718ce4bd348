"""Evaluation metrics for anomaly scores (higher = more anomalous) against 0/1 labels, and seed aggregation.

Every function accepts plain arrays and never raises on a split without positives (or without negatives):
a metric that is undefined there is ``NaN``. ADAPT test splits can hold a single malicious process, so
callers must expect NaN and aggregate with :func:`aggregate` (NaN-aware mean and spread).

Ties in the scores are common (many processes share one sentence, hence one embedding, hence one score);
every ranking metric here treats tied rows as one block and averages over the block, so the result does not
depend on the input order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

NAN = float("nan")

#: Scalar metrics computed per run by :func:`score_metrics` and :func:`threshold_metrics`.
METRIC_NAMES: tuple[str, ...] = (
    "auc_roc", "pr_auc", "ndcg", "mean_rank_malicious", "precision", "recall", "f1",
)


def _arrays(y: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if t.shape != s.shape:
        raise ValueError(f"{len(t)} labels for {len(s)} scores")
    if np.isnan(s).any():
        raise ValueError("scores hold NaN")
    return (t == 1).astype(np.int64), s


def _tie_groups(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by descending score; returns (order, start of each tie block, block id per sorted row)."""
    order = np.argsort(-s, kind="stable")
    ss = s[order]
    new_block = np.r_[True, ss[1:] != ss[:-1]]
    block = np.cumsum(new_block) - 1
    starts = np.flatnonzero(new_block)
    return order, starts, block


def _weights(weights: Any, n: int) -> np.ndarray:
    """Row weights (the row count of each distinct entry); ones when None."""
    if weights is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != (n,):
        raise ValueError(f"{len(w)} weights for {n} scores")
    if (w < 0).any() or not np.isfinite(w).all():
        raise ValueError("weights must be finite and non-negative")
    return w


def auc_roc(y: Any, scores: Any, weights: Any = None) -> float:
    """Area under the ROC curve: P(score of a malicious row > score of a benign row), ties count 1/2.

    Args:
        y: 0/1 labels.
        scores: higher = more anomalous.
        weights: per row, how many rows it stands for (a distinct entry's count); None: one each.

    Returns:
        The AUC, or NaN when ``y`` holds no positive or no negative weight.
    """
    t, s = _arrays(y, scores)
    w = _weights(weights, len(s))
    wpos, wneg = w * t, w * (1 - t)
    pos, neg = float(wpos.sum()), float(wneg.sum())
    if pos == 0 or neg == 0:
        return NAN
    # Mann-Whitney U over tie blocks: each positive beats the negatives of lower blocks, ties count half.
    order, starts, _ = _tie_groups(-s)  # ascending score
    block_pos = np.add.reduceat(wpos[order], starts)
    block_neg = np.add.reduceat(wneg[order], starts)
    below = np.cumsum(block_neg) - block_neg
    return float((block_pos * (below + block_neg / 2.0)).sum() / (pos * neg))


def average_precision(y: Any, scores: Any, weights: Any = None) -> float:
    """PR-AUC as average precision: sum over thresholds of (recall step) x precision (sklearn's definition).

    Tied scores form one threshold; ``weights`` as in :func:`auc_roc`. Returns NaN when ``y`` holds no positive.
    """
    t, s = _arrays(y, scores)
    w = _weights(weights, len(s))
    pos = float((w * t).sum())
    if pos == 0:
        return NAN
    order, starts, _ = _tie_groups(s)
    ends = np.r_[starts[1:], len(s)] - 1  # last sorted index of each tie block
    tp = np.cumsum((w * t)[order])[ends]
    flagged = np.cumsum(w[order])[ends]
    precision = np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0)
    recall = tp / pos
    steps = np.diff(np.r_[0.0, recall])
    return float((steps * precision).sum())


def ndcg_malicious(y: Any, scores: Any, k: int | None = None) -> float:
    """Normalised discounted cumulative gain of the malicious rows in the ranking by descending score.

    Relevance is 1 for malicious and 0 for benign; the gain of rank ``r`` (1-based) is ``1 / log2(r + 1)``.
    Tied rows share the mean discount of the ranks they span (as sklearn's ``ndcg_score``). With ``k``, only
    the first ``k`` ranks count, for both the ranking and the ideal one.

    Returns:
        DCG / ideal DCG in [0, 1]; NaN when ``y`` holds no positive.
    """
    t, s = _arrays(y, scores)
    pos = int(t.sum())
    if pos == 0:
        return NAN
    n = len(s)
    cutoff = n if k is None else min(k, n)
    discount = np.zeros(n, dtype=np.float64)
    discount[:cutoff] = 1.0 / np.log2(np.arange(2, cutoff + 2))
    order, starts, block = _tie_groups(s)
    ends = np.r_[starts[1:], n]
    block_discount = np.array([discount[a:b].mean() for a, b in zip(starts, ends, strict=True)])
    dcg = float((t[order] * block_discount[block]).sum())
    ideal = float(discount[: min(pos, cutoff)].sum())
    return dcg / ideal


def malicious_ranks(y: Any, scores: Any) -> np.ndarray:
    """The 1-based rank of each malicious row by descending score; a tie block gets its mean rank."""
    t, s = _arrays(y, scores)
    order, starts, block = _tie_groups(s)
    ends = np.r_[starts[1:], len(s)]
    mean_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    return np.sort(mean_rank[block][t[order] == 1])


def benign_twins(sentences: Any, y: Any) -> dict[str, int]:
    """How many malicious rows have the exact sentence of a benign row (``malicious_with_benign_twin``), and
    how many distinct sentences they are (``twin_sentences``): a detector that sees only the sentence scores a
    row and its twin alike, so the labels themselves disagree there."""
    return twins_of_counts(*sentence_label_counts(sentences, y))


def sentence_ceiling(sentences: Any, y: Any, rows: Any) -> dict[str, float]:
    """The best AUC-ROC that any score of the sentence alone can reach on ``rows`` (row indexes, e.g. a test
    split), and that order's PR-AUC: :func:`ceiling_of_counts` of the rows' sentences."""
    idx = np.asarray(rows, dtype=np.int64)
    return ceiling_of_counts(*sentence_label_counts([sentences[i] for i in idx], np.asarray(y)[idx]))


def sentence_label_counts(sentences: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct sentence (text or ``sentence_hash``; a list, an array or an Arrow column), its malicious and
    its benign row counts, grouped in Arrow."""
    import pyarrow as pa

    keys = sentences if isinstance(sentences, pa.ChunkedArray | pa.Array) else pa.array(list(sentences))
    groups = pa.table({"key": keys, "malicious": (np.asarray(y) == 1).astype(np.int64)}).group_by("key").aggregate(
        [("malicious", "sum"), ("malicious", "count")])
    malicious = groups.column("malicious_sum").to_numpy().astype(np.float64)
    return malicious, groups.column("malicious_count").to_numpy().astype(np.float64) - malicious


def twins_of_counts(malicious: Any, benign: Any) -> dict[str, int]:
    """:func:`benign_twins` from per-sentence malicious and benign row counts."""
    pos, neg = np.asarray(malicious, dtype=np.float64), np.asarray(benign, dtype=np.float64)
    both = (pos > 0) & (neg > 0)
    return {"malicious_with_benign_twin": int(pos[both].sum()), "twin_sentences": int(both.sum())}


def ceiling_of_counts(malicious: Any, benign: Any) -> dict[str, float]:
    """The sentence ceiling from per-sentence malicious and benign row counts.

    Rows with one sentence get one score whatever the detector, so the best any of them can do is rank each
    sentence by its share of malicious rows (the likelihood-ratio order, whose ROC curve lies on or above every
    other order's): its ``auc_roc`` bounds every such detector's. Its ``pr_auc`` is that order's average
    precision, close to the best one but not a strict bound (where tie blocks fall moves the steps). Computed
    from the labels: a diagnostic of the data and the template, never a choice of model or threshold. NaN where
    the rows hold one class only.
    """
    pos, neg = np.asarray(malicious, dtype=np.float64), np.asarray(benign, dtype=np.float64)
    total = pos + neg
    share = np.divide(pos, total, out=np.zeros_like(pos), where=total > 0)
    labels, scores, weights = np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[share, share], np.r_[pos, neg]
    return {"auc_roc": auc_roc(labels, scores, weights), "pr_auc": average_precision(labels, scores, weights)}


def confusion(y: Any, predicted: Any) -> dict[str, int]:
    """Counts ``{"tn", "fp", "fn", "tp"}`` of 0/1 predictions against labels."""
    t = (np.asarray(y, dtype=np.float64).ravel() == 1)
    p = (np.asarray(predicted, dtype=np.float64).ravel() == 1)
    if t.shape != p.shape:
        raise ValueError(f"{len(t)} labels for {len(p)} predictions")
    return {"tn": int((~t & ~p).sum()), "fp": int((~t & p).sum()), "fn": int((t & ~p).sum()), "tp": int((t & p).sum())}


def threshold_metrics(y: Any, scores: Any, threshold: float) -> dict[str, Any]:
    """Precision, recall, F1 and the confusion matrix of flagging ``score >= threshold``.

    Undefined values are NaN: precision when nothing is flagged, recall when there is no positive, F1 when
    there is neither a positive nor a flag.
    """
    t, s = _arrays(y, scores)
    cm = confusion(t, s >= threshold)
    tp, fp, fn = cm["tp"], cm["fp"], cm["fn"]
    precision = tp / (tp + fp) if tp + fp else NAN
    recall = tp / (tp + fn) if tp + fn else NAN
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else NAN
    return {"precision": precision, "recall": recall, "f1": f1, "confusion": cm, "threshold": float(threshold)}


def score_metrics(y: Any, scores: Any, top_k: int = 10) -> dict[str, Any]:
    """The threshold-free metrics of one scored split: AUC-ROC, PR-AUC, nDCG, malicious ranks, counts."""
    t, s = _arrays(y, scores)
    ranks = malicious_ranks(t, s)
    return {
        "auc_roc": auc_roc(t, s),
        "pr_auc": average_precision(t, s),
        "ndcg": ndcg_malicious(t, s),
        f"ndcg_at_{top_k}": ndcg_malicious(t, s, k=top_k),
        "mean_rank_malicious": float(ranks.mean()) if len(ranks) else NAN,
        "worst_rank_malicious": float(ranks.max()) if len(ranks) else NAN,
        "rows": len(t),
        "positives": int(t.sum()),
    }


def aggregate(runs: Iterable[Mapping[str, Any]], keys: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Mean and spread over seeds of each numeric metric, ignoring NaN.

    Args:
        runs: per-seed metric dicts (non-numeric values are skipped).
        keys: metrics to aggregate; None: every key whose values are numbers.

    Returns:
        ``{metric: {"mean", "std", "min", "max", "n"}}``; ``n`` counts the finite values, ``std`` is the
        sample standard deviation (ddof 1; 0 for one value); NaN where no seed has a finite value.
    """
    runs = list(runs)
    names = list(keys) if keys is not None else sorted(
        {k for r in runs for k, v in r.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    )
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        values = np.array([float(r[name]) for r in runs if isinstance(r.get(name), int | float)], dtype=np.float64)
        finite = values[np.isfinite(values)]
        if len(finite) == 0:
            out[name] = {"mean": NAN, "std": NAN, "min": NAN, "max": NAN, "n": 0}
            continue
        out[name] = {
            "mean": float(finite.mean()),
            "std": float(finite.std(ddof=1)) if len(finite) > 1 else 0.0,
            "min": float(finite.min()),
            "max": float(finite.max()),
            "n": len(finite),
        }
    return out


def curves(y: Any, scores: Any) -> dict[str, list[float]]:
    """ROC (fpr, tpr) and precision-recall points of a scored split, one point per tie block.

    Returns empty lists when the split holds no positive or no negative.
    """
    t, s = _arrays(y, scores)
    pos, neg = int(t.sum()), int(len(t) - t.sum())
    if pos == 0 or neg == 0:
        return {"fpr": [], "tpr": [], "precision": [], "recall": []}
    order, starts, _ = _tie_groups(s)
    ends = np.r_[starts[1:], len(s)] - 1
    tp = np.cumsum(t[order])[ends].astype(np.float64)
    fp = (ends + 1) - tp
    return {
        "fpr": [0.0, *(fp / neg).tolist()],
        "tpr": [0.0, *(tp / pos).tolist()],
        "precision": [1.0, *(tp / (ends + 1)).tolist()],
        "recall": [0.0, *(tp / pos).tolist()],
    }


def finite_or_none(value: Any) -> Any:
    """NaN/inf -> None, recursively, so that metrics serialise as strict JSON (``null``)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    if isinstance(value, np.floating):
        return finite_or_none(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value
