"""The detector registry: one :class:`DetectorSpec` per :class:`~aptray.config.DetectorName`.

Every list of detectors in the package derives from :data:`DETECTORS` (the CLI choices, the torch models,
the experiment's baselines, which detectors need windows of events), so a new detector is one entry here and
a misspelt name is a type error rather than a runtime lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from aptray.config import DetectorName
from aptray.detectors.baselines import (
    AVFDetector,
    Baseline,
    DBSCANDetector,
    IForestDetector,
    KNNDetector,
    OCSVMDetector,
    PCADetector,
    RarityDetector,
)

#: The neighbourhood of ``knn-wide``. Where benign training holds a few rows with an attack's very sentence
#: (bovia/5dir: 12 of 14 attacks), the 5 nearest are mostly those copies; 20 outvote them (bovia/5dir All,
#: MiniLM aspects without events, 5 seeds, test AUC-ROC / PR-AUC: k=5 0.936 / 0.109, k=20 0.964 / 0.257), at
#: some cost where repeats are the signal (bovia/trace All: 0.962 / 0.758 against 0.993 / 0.645). The
#: experiment runs both and chooses on validation.
WIDE_NEIGHBOURS = 20

if TYPE_CHECKING:
    from aptray.config import ThresholdConfig, TrainConfig
    from aptray.detectors.base import Detector


class Family(StrEnum):
    """How a detector is trained."""

    TORCH = "torch"  # a torch autoencoder: Ray Train (DDP) on large inputs, in-process on small ones
    BASELINE = "baseline"  # a classic model fitted in one Ray task (scikit-learn or counting)
    ENSEMBLE = "ensemble"  # members of the other families fitted together in one process or Ray task


class Features(StrEnum):
    """What a detector learns from."""

    EMBEDDINGS = "embeddings"  # one sentence embedding per row
    WINDOWS = "windows"  # windows of consecutive event embeddings of one process (ordered events only)
    ATTRIBUTES = "attributes"  # raw 0/1 attributes where the source has them (ADAPT), else binned embeddings


@dataclass(frozen=True)
class DetectorSpec:
    """What the rest of the package needs to know about a detector.

    Attributes:
        name: the detector.
        family: torch or baseline.
        features: what it trains on; :attr:`Features.WINDOWS` detectors need ordered single events.
        summary: one line for help texts.
        baseline: the baseline class (None for torch detectors).
        reference: a baseline from the literature, reported beside aptray's chosen detector in the experiment
            and never chosen itself; aptray's own detectors (the torch models, kNN, rarity) are the candidates.
        preset: constructor arguments of ``baseline`` that make this detector what it is (``knn-wide`` is
            :class:`KNNDetector` with ``n_neighbors`` 20); they take precedence over ``train.extra``.
    """

    name: DetectorName
    family: Family
    features: Features
    summary: str
    baseline: type[Baseline] | None = None
    reference: bool = False
    preset: tuple[tuple[str, Any], ...] = ()

    @property
    def windowed(self) -> bool:
        """True when it scores windows of consecutive events rather than single rows."""
        return self.features is Features.WINDOWS

    def build(self, train: TrainConfig, threshold: ThresholdConfig) -> Detector:
        """An unfitted detector configured from the train and threshold config sections.

        Model-specific hyperparameters come from ``train.extra`` (e.g. ``{"beta": 0.01}``, ``{"nu": 0.1}``).
        """
        thr: dict[str, Any] = {"percentile": threshold.percentile, "tiers": dict(threshold.tiers)}
        if self.family is Family.ENSEMBLE:
            from aptray.detectors.ensemble import EnsembleDetector

            specs = [detector_spec(m) for m in train.ensemble_members]
            unfit = [s.name.value for s in specs if s.family is Family.ENSEMBLE or s.windowed]
            if unfit:
                raise ValueError(f"train.ensemble_members cannot hold {', '.join(unfit)}: members score single rows")
            return EnsembleDetector([s.build(train, threshold) for s in specs], holdout=train.ensemble_holdout,
                                    seed=train.seed, **thr)
        if self.baseline is None:
            from aptray.detectors.reconstruction import ReconstructionDetector

            extra = dict(train.extra)
            if self.windowed:
                extra.setdefault("window", train.window)
            return ReconstructionDetector(
                model=self.name.value, hidden=train.hidden, epochs=train.epochs, batch_size=train.batch_size,
                lr=train.lr, patience=train.patience, val_fraction=train.val_fraction, seed=train.seed,
                extra=extra, distinct_epoch_rows=train.distinct_epoch_rows, **thr,
            )
        cls = self.baseline
        kwargs = {k: v for k, v in train.extra.items() if k in cls._params} | dict(self.preset)
        if "seed" in cls._params:
            kwargs.setdefault("seed", train.seed)
        return cls(**kwargs, **thr)


def _torch(name: DetectorName, summary: str, features: Features = Features.EMBEDDINGS) -> DetectorSpec:
    return DetectorSpec(name, Family.TORCH, features, summary)


def _baseline(cls: type[Baseline], summary: str, features: Features = Features.EMBEDDINGS,
              reference: bool = True) -> DetectorSpec:
    return DetectorSpec(DetectorName(cls.name), Family.BASELINE, features, summary, cls, reference)


#: Every detector, in the order help texts and reports list them.
DETECTORS: dict[DetectorName, DetectorSpec] = {s.name: s for s in (
    _torch(DetectorName.AE, "autoencoder 768-512-128-512-768 (widths follow the embedding dimension)"),
    _torch(DetectorName.VAE, "variational autoencoder"),
    _torch(DetectorName.DAE, "denoising autoencoder"),
    _torch(DetectorName.AE_ATTN, "autoencoder with self-attention over embedding chunks"),
    _torch(DetectorName.VAE_ATTN, "variational autoencoder with attention"),
    _torch(DetectorName.DAE_ATTN, "denoising autoencoder with attention"),
    _torch(DetectorName.CAE, "contractive autoencoder (encoder sensitivity penalised, Rifai et al. 2011)"),
    _torch(DetectorName.DEEP_SVDD, "Deep SVDD: squared distance to a learnt centre (Ruff et al. 2018)"),
    _torch(DetectorName.LSTM_AE, "LSTM autoencoder over windows of a process's consecutive events (BETH)",
           Features.WINDOWS),
    _baseline(IForestDetector, "Isolation Forest"),
    _baseline(OCSVMDetector, "one-class SVM"),
    _baseline(PCADetector, "PCA reconstruction error"),
    _baseline(DBSCANDetector, "distance to the DBSCAN core points"),
    _baseline(AVFDetector, "attribute value frequency (raw 0/1 attributes where the source has them)",
              Features.ATTRIBUTES),
    _baseline(KNNDetector, "mean distance to the k nearest benign training rows (their repeats counted)",
              reference=False),
    DetectorSpec(DetectorName.KNN_WIDE, Family.BASELINE, Features.EMBEDDINGS,
                 f"knn over the {WIDE_NEIGHBOURS} nearest benign training rows: a few benign copies of an attack's "
                 "sentence no longer hide it", KNNDetector, preset=(("n_neighbors", WIDE_NEIGHBOURS),)),
    _baseline(RarityDetector, "rarity of the exact sentence among the benign training rows (-log10 share)",
              reference=False),
    DetectorSpec(DetectorName.ENSEMBLE, Family.ENSEMBLE, Features.EMBEDDINGS,
                 "rank ensemble of train.ensemble_members: mean place among held-out benign rows' scores"),
)}

#: Torch detectors (trained as networks; scored by reconstruction error).
TORCH_DETECTORS: tuple[DetectorName, ...] = tuple(n for n, s in DETECTORS.items() if s.family is Family.TORCH)
#: The literature's baselines (reported beside aptray's chosen detector in the results table, never chosen).
BASELINE_DETECTORS: tuple[DetectorName, ...] = tuple(n for n, s in DETECTORS.items() if s.reference)
#: aptray's own detectors: the candidates the experiment chooses from on validation.
APTRAY_DETECTORS: tuple[DetectorName, ...] = tuple(n for n, s in DETECTORS.items() if not s.reference)


def detector_spec(name: DetectorName | str) -> DetectorSpec:
    """The spec of ``name``.

    Raises:
        ValueError: an unknown name (listing the known ones).
    """
    try:
        return DETECTORS[DetectorName(name)]
    except ValueError:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}") from None


def artifact_classes() -> dict[str, type[Detector]]:
    """Artifact ``kind`` -> the class that restores it (``reconstruction`` or a baseline's name)."""
    from aptray.detectors.reconstruction import ReconstructionDetector

    classes: dict[str, type[Detector]] = {ReconstructionDetector.name: ReconstructionDetector}
    classes.update({s.baseline.name: s.baseline for s in DETECTORS.values() if s.baseline is not None})
    from aptray.detectors.ensemble import EnsembleDetector

    classes[EnsembleDetector.name] = EnsembleDetector
    return classes
