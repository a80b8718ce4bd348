"""Evaluation metrics against values worked out by hand (and, for random data, against scikit-learn)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from aptray.evaluate.metrics import (
    aggregate,
    auc_roc,
    average_precision,
    benign_twins,
    ceiling_of_counts,
    confusion,
    curves,
    finite_or_none,
    malicious_ranks,
    ndcg_malicious,
    score_metrics,
    sentence_ceiling,
    threshold_metrics,
)

# Case A, no ties: y = [0, 0, 1, 1], s = [0.1, 0.4, 0.35, 0.8].
# Ranked by descending score: 0.8 (mal), 0.4 (ben), 0.35 (mal), 0.1 (ben).
#   AUC: mal 0.8 beats both benign (2), mal 0.35 beats 0.1 only (1) -> 3 of 4 pairs = 0.75.
#   AP: cut after rank 1: P=1, R=0.5; rank 2: P=1/2, R=0.5; rank 3: P=2/3, R=1; rank 4: P=1/2, R=1.
#       AP = 0.5*1 + 0*0.5 + 0.5*(2/3) + 0 = 0.8333...
#   nDCG: malicious at ranks 1 and 3 -> DCG = 1/log2(2) + 1/log2(4) = 1.5; ideal ranks 1, 2 ->
#       1 + 1/log2(3) = 1.63093; nDCG = 1.5 / 1.63093 = 0.919721.
Y_A = [0, 0, 1, 1]
S_A = [0.1, 0.4, 0.35, 0.8]

# Case B, ties: y = [1, 0, 1, 0], s = [0.5, 0.5, 0.9, 0.1].
# Ranked: 0.9 (mal) | {0.5 mal, 0.5 ben} tied at ranks 2-3 | 0.1 (ben).
#   AUC: mal 0.9 beats both (2); mal 0.5 ties ben 0.5 (1/2) and beats 0.1 (1) -> 3.5 / 4 = 0.875.
#   AP: block 1: P=1, R=0.5; block 2: P=2/3, R=1 -> 0.5*1 + 0.5*(2/3) = 0.8333...
#   nDCG: discounts 1, 1/log2(3)=0.630930, 1/log2(4)=0.5; the tie block shares (0.630930+0.5)/2 = 0.565465;
#       DCG = 1 + 0.565465 = 1.565465; ideal 1.630930 -> 0.959860.
#   ranks of malicious: 1 and (2+3)/2 = 2.5.
#   threshold 0.5 flags rows 0, 1, 2: tp=2, fp=1, fn=0, tn=1 -> P=2/3, R=1, F1 = 4/(4+1) = 0.8.
Y_B = [1, 0, 1, 0]
S_B = [0.5, 0.5, 0.9, 0.1]


def test_auc_by_hand() -> None:
    assert auc_roc(Y_A, S_A) == pytest.approx(0.75)
    assert auc_roc(Y_B, S_B) == pytest.approx(0.875)
    # A perfect ranking and a reversed one.
    assert auc_roc([0, 0, 1], [0.1, 0.2, 0.9]) == 1.0
    assert auc_roc([0, 0, 1], [0.9, 0.8, 0.1]) == 0.0


def test_average_precision_by_hand() -> None:
    assert average_precision(Y_A, S_A) == pytest.approx(5 / 6)
    assert average_precision(Y_B, S_B) == pytest.approx(5 / 6)
    # One positive ranked 3rd of 4: AP = precision at its cut = 1/3.
    assert average_precision([0, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(1 / 3)


def test_ndcg_by_hand() -> None:
    assert ndcg_malicious(Y_A, S_A) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert ndcg_malicious(Y_A, S_A) == pytest.approx(0.919721, abs=1e-6)
    assert ndcg_malicious(Y_B, S_B) == pytest.approx(0.959860, abs=1e-6)
    # @k=1: only rank 1 counts; case A has a malicious row there -> 1.0; reversed case A -> 0.
    assert ndcg_malicious(Y_A, S_A, k=1) == pytest.approx(1.0)
    assert ndcg_malicious(Y_A, [-v for v in S_A], k=1) == pytest.approx(0.0)


def test_ranks_and_thresholds_by_hand() -> None:
    assert malicious_ranks(Y_B, S_B).tolist() == [1.0, 2.5]
    m = threshold_metrics(Y_B, S_B, 0.5)
    assert m["confusion"] == {"tn": 1, "fp": 1, "fn": 0, "tp": 2}
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == 1.0
    assert m["f1"] == pytest.approx(0.8)
    assert confusion([1, 0, 0], [0, 0, 1]) == {"tn": 1, "fp": 1, "fn": 1, "tp": 0}


def test_no_positive_gives_nan_not_a_crash() -> None:
    y, s = [0, 0, 0], [0.3, 0.2, 0.1]
    assert math.isnan(auc_roc(y, s))
    assert math.isnan(average_precision(y, s))
    assert math.isnan(ndcg_malicious(y, s))
    m = threshold_metrics(y, s, 0.25)
    assert math.isnan(m["recall"]) and m["precision"] == 0.0 and m["f1"] == 0.0
    m = threshold_metrics(y, s, 1.0)  # nothing flagged, nothing to find
    assert math.isnan(m["precision"]) and math.isnan(m["f1"])
    sm = score_metrics(y, s)
    assert sm["positives"] == 0 and math.isnan(sm["mean_rank_malicious"])
    # No negative: AUC undefined, AP defined.
    assert math.isnan(auc_roc([1, 1], [0.1, 0.2]))
    assert average_precision([1, 1], [0.1, 0.2]) == 1.0
    assert curves(y, s)["fpr"] == []


def test_metrics_match_sklearn_on_random_data() -> None:
    from sklearn.metrics import average_precision_score, ndcg_score, roc_auc_score

    rng = np.random.default_rng(7)
    y = (rng.random(300) < 0.1).astype(int)
    s = np.round(rng.random(300) + y * 0.3, 2)  # rounding makes ties
    assert auc_roc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s))
    w = rng.integers(1, 6, size=300)
    assert auc_roc(y, s, w) == pytest.approx(roc_auc_score(y, s, sample_weight=w))
    assert average_precision(y, s, w) == pytest.approx(average_precision_score(y, s, sample_weight=w))
    assert ndcg_malicious(y, s) == pytest.approx(ndcg_score([y], [s]))
    assert ndcg_malicious(y, s, k=10) == pytest.approx(ndcg_score([y], [s], k=10))
    c = curves(y, s)
    assert np.trapezoid(c["tpr"], c["fpr"]) == pytest.approx(roc_auc_score(y, s))


def test_weights_stand_for_repeated_rows() -> None:
    # a distinct entry with count w scores as w copies of its row (how training records validation rows)
    rng = np.random.default_rng(3)
    y = (rng.random(80) < 0.2).astype(int)
    s = np.round(rng.random(80) + y * 0.2, 1)  # coarse: many ties across labels
    w = rng.integers(1, 5, size=80)
    expanded_y, expanded_s = np.repeat(y, w), np.repeat(s, w)
    assert auc_roc(y, s, w) == pytest.approx(auc_roc(expanded_y, expanded_s))
    assert average_precision(y, s, w) == pytest.approx(average_precision(expanded_y, expanded_s))
    # a zero weight removes the row: the perfect ranking below is spoilt only by the weighted-out benign 0.95
    assert auc_roc([0, 0, 1, 0], [0.1, 0.2, 0.9, 0.95], [1, 1, 1, 0]) == 1.0
    with pytest.raises(ValueError, match="weights"):
        auc_roc([0, 1], [0.1, 0.2], [1])


def test_aggregate_mean_spread_by_hand() -> None:
    # auc over seeds 0.5, 0.7, NaN -> mean 0.6, sample std sqrt((0.01 + 0.01) / 1) = 0.141421, n = 2.
    runs: list[dict[str, Any]] = [
        {"auc_roc": 0.5, "f1": 0.2, "name": "x"}, {"auc_roc": 0.7, "f1": 0.2}, {"auc_roc": float("nan")},
    ]
    agg = aggregate(runs)
    assert set(agg) == {"auc_roc", "f1"}
    assert agg["auc_roc"]["mean"] == pytest.approx(0.6)
    assert agg["auc_roc"]["std"] == pytest.approx(math.sqrt(0.02))
    assert agg["auc_roc"]["n"] == 2 and agg["auc_roc"]["min"] == 0.5 and agg["auc_roc"]["max"] == 0.7
    assert agg["f1"]["std"] == 0.0
    empty = aggregate([{"pr_auc": float("nan")}])
    assert empty["pr_auc"]["n"] == 0 and math.isnan(empty["pr_auc"]["mean"])


def test_finite_or_none_gives_strict_json() -> None:
    doc = finite_or_none({"a": float("nan"), "b": [np.float32(1.5), float("inf")], "c": np.int64(3)})
    assert json.loads(json.dumps(doc, allow_nan=False)) == {"a": None, "b": [1.5, None], "c": 3}


def test_benign_twins_and_the_sentence_ceiling_by_hand() -> None:
    # Sentence "a" is malicious once and benign once; b and d are malicious only, c benign only.
    sentences = ["a", "a", "b", "c", "c", "d"]
    y = [1, 0, 1, 0, 0, 1]
    assert benign_twins(sentences, y) == {"malicious_with_benign_twin": 1, "twin_sentences": 1}
    # Best order: {b, d} (share 1) > {a, a} (share 1/2) > {c, c} (share 0).
    #   AUC: b and d beat all 3 benign (6); malicious a ties benign a (1/2) and beats c, c (2) -> 8.5 / 9.
    #   AP: block {b, d}: P 1 at R 2/3; block {a, a}: P 3/4 at R 1 -> 2/3 + 1/3 * 3/4 = 11/12.
    full = sentence_ceiling(sentences, y, range(6))
    assert full["auc_roc"] == pytest.approx(8.5 / 9) and full["pr_auc"] == pytest.approx(11 / 12)
    # On rows 0, 1, 3, 4 only a's share counts: malicious a ties benign a and beats c, c -> 2.5 / 3; AP 1/2.
    part = sentence_ceiling(sentences, y, [0, 1, 3, 4])
    assert part["auc_roc"] == pytest.approx(2.5 / 3) and part["pr_auc"] == pytest.approx(0.5)
    assert benign_twins(["x", "y"], [0, 0]) == {"malicious_with_benign_twin": 0, "twin_sentences": 0}
    # From counts alone (what a score output's sentence hashes give): a 1/1, b 1/0, c 0/2, d 1/0.
    assert ceiling_of_counts([1, 1, 0, 1], [1, 0, 2, 0]) == pytest.approx(full)


def test_no_score_of_the_sentence_passes_its_ceiling() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(4, 40))
        sentences = [f"s{k}" for k in rng.integers(0, 6, n)]
        y = rng.integers(0, 2, n)
        if y.min() == y.max():
            continue
        ceiling = sentence_ceiling(sentences, y, range(n))
        by_sentence = {s: rng.random() for s in set(sentences)}  # any detector: one score per sentence
        scores = [by_sentence[s] for s in sentences]
        assert auc_roc(y, scores) <= ceiling["auc_roc"] + 1e-12


def test_fusion_leaves_out_members_below_chance_on_validation() -> None:
    """The seed's rank fusion took its three best on validation even where one ranked the validation attacks
    below every benign row (AUC 0), which only inverts part of the ranking."""
    from aptray.evaluate.fusion import fuse

    y = np.array([0, 0, 0, 0, 1, 1])
    good = np.array([0.1, 0.2, 0.3, 0.4, 0.8, 0.9])
    scored = {"a": (good, good), "b": (good * 2, good), "inverted": (-good, good)}
    fused = fuse(scored, y, size=3, top_k=2, percentile=99.0)
    assert fused is not None and set(fused["members"]) == {"a", "b"}
    assert fuse({"a": (good, good), "inverted": (-good, good)}, y, size=3, top_k=2, percentile=99.0) is None
