"""Detectors behind one contract (see :mod:`aptray.detectors.base`); :mod:`aptray.detectors.registry` lists them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aptray.config import DetectorName, ThresholdConfig, TrainConfig
    from aptray.detectors.base import Detector


def make_detector(name: DetectorName | str, train: TrainConfig, threshold: ThresholdConfig) -> Detector:
    """An unfitted detector for ``name`` configured from the train and threshold config sections.

    Model-specific hyperparameters come from ``train.extra`` (e.g. ``{"beta": 0.01}``, ``{"nu": 0.1}``).

    Raises:
        ValueError: an unknown name.
    """
    from aptray.detectors.registry import detector_spec

    return detector_spec(name).build(train, threshold)


def detector_class(kind: str) -> type[Detector]:
    """The class stored under ``kind`` in an artifact (``reconstruction`` or a baseline name)."""
    from aptray.detectors.registry import artifact_classes

    classes = artifact_classes()
    if kind not in classes:
        raise ValueError(f"artifact holds an unknown detector kind {kind!r}")
    return classes[kind]
