"""One experiment run: fit a detector on a split's benign training rows, choose its threshold, score the test.

:func:`fit_and_score` is pure (arrays in, a JSON-able dict out) and runs as one Ray task per
detector x seed; the experiment driver in :mod:`aptray.evaluate.experiment` fans these out.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from aptray.config import ThresholdMethod
from aptray.detectors.base import unique_rows
from aptray.evaluate.metrics import score_metrics, threshold_metrics

if TYPE_CHECKING:
    from aptray.config import AptrayConfig
    from aptray.evaluate.splits import Split

log = logging.getLogger(__name__)


class ScoreRows:
    """The rows of a target's ``scores.parquet`` (protocol, embedder, detector, seed, split, row, score), gathered
    run by run."""

    KEYS = ("protocol", "embedder", "detector", "seed")

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {k: [] for k in (*self.KEYS, "split", "row", "score")}

    def add(self, key: dict[str, Any], part: str, idx: np.ndarray, scores: Any) -> None:
        """One run's scores of split ``part`` (rows ``idx``)."""
        n = len(scores)
        for col in self.KEYS:
            self.columns[col] += [key[col]] * n
        self.columns["split"] += [part] * n
        self.columns["row"] += np.asarray(idx).tolist()
        self.columns["score"] += np.asarray(scores, dtype=np.float64).tolist()

    def table(self) -> pa.Table:
        """The gathered rows."""
        return pa.table(self.columns)

def distinct_rows(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (row, label) pairs of ``X`` and ``y`` with their counts: ``(X, y, counts)``.

    A sentence embeds to the same vector wherever it occurs, so equal rows are the same sentence; the label is
    part of the key, so a sentence seen benign and malicious gives one entry of each.
    """
    label = np.nan_to_num(np.asarray(y, dtype=np.float64), nan=-1.0)
    x = np.asarray(X)
    kind = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)  # labels -1, 0, 1 are exact in float32 too
    first, counts = unique_rows(np.column_stack([x.astype(kind, copy=False), label.astype(kind)]))
    return X[first], np.asarray(y, dtype=np.float64)[first], counts


def fit_and_score(X: np.ndarray, y: np.ndarray, split: Split, detector: str, cfg: AptrayConfig,
                  unsupervised: bool = False) -> dict[str, Any]:
    """Fit ``detector`` on the benign train rows of ``split``; threshold on validation; score validation and test.

    With ``cfg.train.distinct`` (the default, as in ``aptray train``) the detector fits the distinct training rows
    weighted by their counts (:func:`distinct_rows`, :meth:`Detector.fit` with ``weights``). ``unsupervised``:
    the training rows' labels are not used (every row trains, as in Berrada et al.'s protocol).

    The threshold is the F1-optimal cut on validation when ``cfg.experiment.threshold`` is ``f1`` and the
    validation split holds both classes; otherwise the detector's benign-training percentile
    (``cfg.threshold.percentile``). Test labels are read only to compute the returned metrics.

    Args:
        X: features, one row per process (embeddings, or raw 0/1 attributes for AVF).
        y: 0/1 labels.
        split: the seed's split.
        detector: a detector (:data:`aptray.detectors.registry.DETECTORS`).
        cfg: the config (``train``, ``threshold`` and ``experiment`` sections are read).

    Returns:
        ``status`` (ok/error), ``error``, ``train_seconds``, ``score_seconds``, ``rows`` (split counts),
        ``threshold`` (value, method), ``test`` and ``val`` metrics, ``history`` (torch models) and the raw
        ``test_scores``/``val_scores`` (lists aligned with ``split.test``/``split.val``).
    """
    from aptray.detectors.registry import Family, detector_spec

    exp = cfg.experiment
    result: dict[str, Any] = {"rows": split.counts(y), "status": "ok", "error": None, "history": None}
    try:
        spec = detector_spec(detector)
        if spec.family in (Family.TORCH, Family.ENSEMBLE):  # an ensemble may hold torch members
            import torch

            torch.set_num_threads(max(1, int(exp.task_cpus)))
        train_cfg = cfg.train.model_copy(update={"seed": split.seed, "epochs": exp.epochs or cfg.train.epochs})
        det = spec.build(train_cfg, cfg.threshold)
        start = time.perf_counter()
        y_train = np.full(len(split.train), np.nan) if unsupervised else y[split.train]
        if cfg.train.distinct and X.ndim == 2:
            x_fit, y_fit, counts = distinct_rows(X[split.train], y_train)
            det.fit(x_fit, y_fit, weights=counts)
            result["distinct_train_rows"] = len(x_fit)
        else:
            det.fit(X[split.train], y_train)
        result["train_seconds"] = round(time.perf_counter() - start, 4)
        y_val = y[split.val]
        if exp.threshold is ThresholdMethod.F1 and 0 < int(y_val.sum()) < len(y_val):
            det.set_threshold_f1(X[split.val], y_val)
            method = "f1_validation"
        else:
            method = det.threshold_method_
            if exp.threshold is ThresholdMethod.F1:
                method += " (validation lacks a class)"
        start = time.perf_counter()
        test_scores = det.training_row_scores(X[split.test]) if unsupervised else det.decision_function(X[split.test])
        result["score_seconds"] = round(time.perf_counter() - start, 4)
        val_scores = det.decision_function(X[split.val]) if len(split.val) else np.zeros(0)
    except Exception as exc:  # one failing combination must not sink the experiment; it is reported
        log.warning("%s seed %d failed: %s", detector, split.seed, exc)
        return {**result, "status": "error", "error": f"{type(exc).__name__}: {exc}"}
    y_test = y[split.test]
    result["threshold"] = {"value": float(det.threshold_), "method": method}
    result["test"] = {**score_metrics(y_test, test_scores, exp.top_k),
                      **threshold_metrics(y_test, test_scores, det.threshold_)}
    result["val"] = score_metrics(y_val, val_scores, exp.top_k) if len(split.val) else {}
    history = getattr(det, "history_", None)
    if history:
        result["history"] = {k: history.get(k) for k in ("epochs", "train_loss", "val_loss", "stopped_early")}
    result["test_scores"] = np.asarray(test_scores, dtype=np.float64).tolist()
    result["val_scores"] = np.asarray(val_scores, dtype=np.float64).tolist()
    return result
