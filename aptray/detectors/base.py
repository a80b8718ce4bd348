"""The detector contract every model follows (sklearn/PyOD style, higher score = more anomalous).

``fit(X, y=None)`` trains on the rows not labelled malicious (the excluded count is logged) and sets the
percentile threshold and alert tiers from the benign training scores; ``decision_function`` scores;
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


class Detector(ABC):
    """Base class: hyperparameters in ``__init__``, learned attributes end in ``_``.

    Args:
        percentile: percentile of benign training scores used as ``threshold_``.
        tiers: alert tier name -> percentile of benign training scores.
    """

    #: Registry name (``aptray train --model``).
    name: ClassVar[str] = ""

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
    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> Detector:
        """Train on the rows of ``X`` not labelled malicious in ``y``; set threshold and tiers.

        Returns:
            self.
        """
        X = np.asarray(X)
        keep = benign_mask(y, len(X))
        self.n_excluded_ = int((~keep).sum())
        if self.n_excluded_:
            log.info("%s: excluded %d malicious-labelled rows from training", self.name, self.n_excluded_)
        benign = X[keep]
        if len(benign) == 0:
            raise ValueError("no benign rows to train on")
        self.n_train_ = len(benign)
        self.n_features_in_ = int(X.shape[-1])
        self._fit(benign)
        self.set_threshold_percentile(self.decision_function(benign))
        return self

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
        self.tiers_ = {k: float(v) for k, v in thresholds.get("tiers", {}).items()}
        if thresholds.get("val_f1") is not None:
            self.val_f1_ = float(thresholds["val_f1"])
