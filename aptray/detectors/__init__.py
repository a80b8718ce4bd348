"""Detectors behind one contract (see :mod:`aptray.detectors.base`); :func:`make_detector` builds one by name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aptray.config import ThresholdConfig, TrainConfig
    from aptray.detectors.base import Detector

#: Every name ``aptray train --model`` accepts.
DETECTOR_NAMES: tuple[str, ...] = (
    "ae", "vae", "dae", "ae-attn", "vae-attn", "dae-attn", "lstm-ae", "iforest", "ocsvm", "pca", "dbscan", "avf",
)


def make_detector(name: str, train: TrainConfig, threshold: ThresholdConfig) -> Detector:
    """An unfitted detector for ``name`` configured from the train and threshold config sections.

    Model-specific hyperparameters come from ``train.extra`` (e.g. ``{"beta": 0.01}``, ``{"nu": 0.1}``).
    """
    from aptray.detectors.baselines import BASELINES
    from aptray.detectors.reconstruction import ReconstructionDetector
    from aptray.models import TORCH_MODELS

    thr: dict[str, Any] = {"percentile": threshold.percentile, "tiers": dict(threshold.tiers)}
    if name in TORCH_MODELS:
        return ReconstructionDetector(
            model=name, hidden=train.hidden, epochs=train.epochs, batch_size=train.batch_size, lr=train.lr,
            patience=train.patience, val_fraction=train.val_fraction, seed=train.seed, extra=dict(train.extra),
            **thr,
        )
    if name in BASELINES:
        cls = BASELINES[name]
        kwargs = {k: v for k, v in train.extra.items() if k in cls._params}
        if "seed" in cls._params:
            kwargs.setdefault("seed", train.seed)
        return cls(**kwargs, **thr)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(DETECTOR_NAMES)}")


def detector_class(kind: str) -> type[Detector]:
    """The class stored under ``kind`` in an artifact (``reconstruction`` or a baseline name)."""
    from aptray.detectors.baselines import BASELINES
    from aptray.detectors.reconstruction import ReconstructionDetector

    classes: dict[str, type[Detector]] = {"reconstruction": ReconstructionDetector, **BASELINES}
    if kind not in classes:
        raise ValueError(f"artifact holds an unknown detector kind {kind!r}")
    return classes[kind]
