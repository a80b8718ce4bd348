"""The detector contract every model follows (sklearn/PyOD style, higher score = more anomalous).

``fit(X, y=None, weights=None)`` trains on the rows not labelled malicious (the excluded count is logged) and
sets the percentile threshold and alert tiers from the benign training scores; with ``weights`` each row of
``X`` is a distinct row standing for that many rows (logs repeat: train on the distinct sentences and their
counts); ``decision_function`` scores;
``predict`` flags ``score >= threshold_``; ``set_threshold_f1`` moves the threshold to the F1-optimal cut
of a labelled validation split. Learned state is exposed as plain arrays (:meth:`Detector.state`) so
artifacts never need pickle.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from aptray.detectors.thresholds import (
    DEFAULT_TIERS,
    assign_tiers,
    by_severity,
    f1_threshold,
    percentile_threshold,
    tier_thresholds,
)

log = logging.getLogger(__name__)


def benign_mask(y: np.ndarray | None, n: int) -> np.ndarray:
    """True for rows usable in training: not labelled malicious (unlabelled rows count as benign)."""
    if y is None:
        return np.ones(n, dtype=bool)
    arr = np.asarray(y, dtype=np.float64)
    if len(arr) != n:
        raise ValueError(f"y has {len(arr)} labels for {n} rows")
    return ~(arr == 1)


def unique_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(a, axis=0, return_index=True, return_counts=True)`` less the rows: each distinct row's first
    index and count, in the same order (lexicographic by value), about 15 times faster on embedding rows.

    ``np.unique`` with ``axis=0`` sorts a structured view with one field per column, compared field by field
    (9.9 s for 23,225 rows of 2,305 floats, once per fit of an experiment); here whole rows are sorted as bytes
    and only the distinct rows are then put in value order. ``-0.0`` counts as ``0.0``, as in a float compare.
    """
    arr = np.ascontiguousarray(a)
    if arr.ndim != 2:
        raise ValueError(f"unique_rows needs a 2-d array, got {arr.ndim}-d")
    if arr.dtype.kind == "f" and (negative_zero := (arr == 0) & np.signbit(arr)).any():
        arr = np.where(negative_zero, 0, arr).astype(arr.dtype)  # -0.0 and 0.0: bytes differ, values do not
    if len(arr) == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    rows = arr.view(np.dtype((np.void, arr.dtype.itemsize * arr.shape[1]))).ravel()
    _, first, counts = np.unique(rows, return_index=True, return_counts=True)
    order = np.lexsort(arr[first].T[::-1]) if arr.shape[1] else np.arange(len(first))
    return first[order], counts[order]


def draw_rows(weights: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Indices of a seeded sample without replacement of at most ``limit`` of the rows that distinct rows with
    counts ``weights`` stand for (every row when they are no more than ``limit``), each index repeated as often as
    its row was drawn."""
    counts = np.asarray(weights, dtype=np.int64)
    if int(counts.sum()) > limit:
        counts = np.random.default_rng(seed).multivariate_hypergeometric(counts, limit, method="marginals")
    return np.repeat(np.arange(len(counts)), counts)


class Detector(ABC):
    """Base class: hyperparameters in ``__init__``, learned attributes end in ``_``.

    Args:
        percentile: percentile of benign training scores used as ``threshold_``.
        tiers: alert tier name -> percentile of benign training scores.
    """

    #: Registry name (``aptray train --model``).
    name: ClassVar[str] = ""
    #: Rows a detector that cannot weigh rows fits on when given distinct rows with counts (a seeded sample);
    #: ``aptray train`` sets it per detector from ``train.baseline_max_rows``.
    weighted_fit_max_rows: int = 200_000

    def __init__(self, percentile: float = 99.0, tiers: dict[str, float] | None = None) -> None:
        self.percentile = percentile
        self.tiers = dict(tiers) if tiers is not None else dict(DEFAULT_TIERS)

    # -- to implement ---------------------------------------------------------------------------------
    @abstractmethod
    def _fit(self, X: np.ndarray) -> None:
        """Learn from benign rows ``X``."""

    @abstractmethod
    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Anomaly score per row, higher = more anomalous."""

    @abstractmethod
    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as JSON values (the constructor's keyword arguments)."""

    @abstractmethod
    def state(self) -> dict[str, np.ndarray]:
        """Learned parameters as named arrays (saved as safetensors)."""

    @abstractmethod
    def _load_state(self, arrays: dict[str, np.ndarray], learned: dict[str, Any]) -> None:
        """Restore learned parameters from :meth:`state` arrays and :meth:`learned` values."""

    def learned(self) -> dict[str, Any]:
        """Learned scalars needed to rebuild the detector (JSON values); extended by subclasses."""
        return {"n_features_in_": getattr(self, "n_features_in_", None)}

    # -- the contract ---------------------------------------------------------------------------------
    def _fit_weighted(self, X: np.ndarray, weights: np.ndarray, seed: int) -> None:
        """Learn from distinct benign rows ``X`` standing for ``weights`` rows each. Default: :meth:`_fit` on a
        seeded sample of at most :attr:`weighted_fit_max_rows` of those rows; detectors that can weigh rows
        (the torch autoencoders) override it."""
        self._fit(X[draw_rows(weights, self.weighted_fit_max_rows, seed)])

    def fit(self, X: np.ndarray, y: np.ndarray | None = None, weights: np.ndarray | None = None) -> Detector:
        """Train on the rows of ``X`` not labelled malicious in ``y``; set threshold and tiers.

        Args:
            X: rows, or distinct rows when ``weights`` is given.
            y: 1 malicious (excluded), 0 benign, nan unlabelled (used as benign); None: all usable.
            weights: the row count of each distinct row of ``X`` (thresholds and tiers are then the percentiles
                of the rows they stand for).

        Returns:
            self.
        """
        X = np.asarray(X)
        keep = benign_mask(y, len(X))
        w = None if weights is None else np.asarray(weights, dtype=np.float64)
        if w is not None and len(w) != len(X):
            raise ValueError(f"weights has {len(w)} entries for {len(X)} rows")
        self.n_excluded_ = int((~keep).sum()) if w is None else int(w[~keep].sum())
        if self.n_excluded_:
            log.info("%s: excluded %d malicious-labelled rows from training", self.name, self.n_excluded_)
        benign = X[keep]
        wb = None if w is None else w[keep]
        if len(benign) == 0 or (wb is not None and wb.sum() <= 0):
            raise ValueError("no benign rows to train on")
        self.n_train_ = len(benign) if wb is None else int(wb.sum())
        self.n_features_in_ = int(X.shape[-1])
        if wb is None:
            self._fit(benign)
        else:
            self._fit_weighted(benign, wb, int(getattr(self, "seed", 0)))
        self.set_threshold_percentile(*self._training_scores(benign, wb))
        return self

    def training_row_scores(self, X: np.ndarray) -> np.ndarray:
        """Scores of rows that were themselves training rows (the unsupervised protocol scores what it fitted).
        Most detectors score them as any row; neighbour detectors leave each row out of its own reference."""
        return self.decision_function(X)

    def _training_scores(self, benign: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """The scores (and row counts) the percentile threshold and tiers are taken from: by default the benign
        training rows' own scores; neighbour detectors score their reference rows leave-one-out."""
        return self.decision_function(benign), weights

    def set_threshold_percentile(self, benign_scores: np.ndarray, weights: np.ndarray | None = None) -> Detector:
        """Set ``threshold_`` and ``tiers_`` from benign scores (normally the training rows'; ``weights``: the row
        counts of distinct rows)."""
        self.threshold_ = percentile_threshold(benign_scores, self.percentile, weights)
        self.threshold_method_ = f"percentile_{self.percentile:g}"
        self.tiers_ = tier_thresholds(benign_scores, self.tiers, weights)
        return self

    def set_threshold_f1(self, X_val: np.ndarray, y_val: np.ndarray, weights: np.ndarray | None = None) -> Detector:
        """Move ``threshold_`` to the F1-optimal cut on a labelled validation split (never a test set);
        ``weights``: the row counts of distinct rows."""
        labelled = ~np.isnan(np.asarray(y_val, dtype=np.float64))
        scores = self.decision_function(np.asarray(X_val)[labelled])
        w = None if weights is None else np.asarray(weights)[labelled]
        self.threshold_, self.val_f1_ = f1_threshold(scores, np.asarray(y_val)[labelled], w)
        self.threshold_method_ = "f1"
        return self

    def expected_alert_rate(self) -> float | None:
        """The share of normal rows the threshold alerts on (1% at the 99th percentile of benign training scores);
        None for a threshold chosen otherwise (F1 on validation), which promises no rate."""
        if not self.threshold_method_.startswith("percentile"):  # as set_threshold_percentile names it
            return None
        return round(1.0 - float(self.percentile) / 100.0, 6)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """1 where the score reaches ``threshold_``, else 0."""
        return (self.decision_function(X) >= self.threshold_).astype(np.int8)

    def tier(self, X: np.ndarray) -> list[str | None]:
        """The highest alert tier each row reaches (None below every tier)."""
        return assign_tiers(self.decision_function(X), self.tiers_)

    def thresholds(self) -> dict[str, Any]:
        """Threshold, its method and tiers as JSON values (stored in the artifact)."""
        return {
            "threshold": self.threshold_,
            "method": self.threshold_method_,
            "percentile": self.percentile,
            "tiers": self.tiers_,
            "tier_percentiles": self.tiers,
            "val_f1": getattr(self, "val_f1_", None),
        }

    def restore(self, arrays: dict[str, np.ndarray], learned: dict[str, Any], thresholds: dict[str, Any]) -> None:
        """Set learned state and thresholds on a freshly constructed detector (used by artifact loading)."""
        for key, value in learned.items():
            setattr(self, key, value)
        self._load_state(arrays, learned)
        self.threshold_ = float(thresholds["threshold"])
        self.threshold_method_ = str(thresholds.get("method", "stored"))
        self.tiers_ = by_severity({k: float(v) for k, v in thresholds.get("tiers", {}).items()},
                                  thresholds.get("tier_percentiles"))
        if thresholds.get("val_f1") is not None:
            self.val_f1_ = float(thresholds["val_f1"])
