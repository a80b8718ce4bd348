"""Fitting baseline detectors in parallel Ray tasks (one task per detector, data shared via the object store)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from aptray.detectors.base import Detector

log = logging.getLogger(__name__)


def _fit_one(detector: Detector, X: np.ndarray, y: np.ndarray | None, weights: np.ndarray | None) -> Detector:
    return detector.fit(X, y, weights)


def fit_parallel(
    detectors: dict[str, Detector],
    X: np.ndarray,
    y: np.ndarray | None = None,
    num_cpus: float = 1.0,
    weights: np.ndarray | None = None,
) -> dict[str, Detector]:
    """Fit each detector on the same rows in its own Ray task; returns the fitted detectors by name.

    Args:
        detectors: unfitted detectors by name.
        X: rows; ``y``: labels (rows with 1 are excluded from training by each detector).
        num_cpus: CPUs reserved per task (fractional on small machines).
        weights: the row count of each distinct row of ``X`` (:meth:`Detector.fit`).
    """
    import ray

    task = ray.remote(num_cpus=num_cpus)(_fit_one)
    x_ref = ray.put(X)
    y_ref, w_ref = ray.put(y), ray.put(weights)
    refs = {name: task.remote(det, x_ref, y_ref, w_ref) for name, det in detectors.items()}
    log.info("fitting %d baseline(s) in parallel Ray tasks: %s", len(refs), ", ".join(refs))
    return {name: ray.get(ref) for name, ref in refs.items()}
