"""The model side of a replica: the detector artifact, the encoder it was trained with, and their metadata.

A *loader* is a picklable callable that runs on the replica and returns a :class:`LoadedDetector`;
:class:`ArtifactLoader` is the production one (an artifact folder, local or ``s3://``), and tests may pass
any small real loader to :func:`aptray.serve.app.build_deployment` instead.
"""

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from aptray.config import ServeConfig, TemplateConfig
from aptray.serve.schemas import EmbedderInfo, EventFormat, ModelInfo

log = logging.getLogger(__name__)


class Encoder(Protocol):
    """Sentences -> float32 ``(n, dim)`` embeddings (:class:`aptray.embed.encoder.SentenceEncoder`)."""

    def encode(self, sentences: list[str]) -> np.ndarray: ...


class ScoringDetector(Protocol):
    """What the endpoint needs of a detector: scores (higher = more anomalous), threshold and tiers."""

    threshold_: float
    tiers_: dict[str, float]

    def decision_function(self, X: np.ndarray) -> np.ndarray: ...


@dataclass
class LoadedDetector:
    """Everything a replica scores with.

    Attributes:
        encoder: the sentence encoder the detector was trained on.
        detector: the fitted detector.
        template: the template settings the training sentences were made with.
        info: metadata answered by ``GET /v1/model``.
        meta: the artifact's whole config (source and aspect it was trained on).
        window: events per window of a windowed detector (None: it scores single rows).
    """

    encoder: Encoder
    detector: ScoringDetector
    template: TemplateConfig
    info: ModelInfo
    meta: dict[str, Any] = field(default_factory=dict)
    window: int | None = None


Loader = Callable[[], LoadedDetector]


def artifact_id(path: str, config: dict[str, Any]) -> str:
    """``<folder name>@<first 12 hex digits of the sha256 of its config>``: changes with any retraining."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{path.rstrip('/').rsplit('/', 1)[-1]}@{digest}"


class ArtifactLoader:
    """Loads a detector artifact and the encoder it was trained with (runs on the replica).

    Args:
        artifact: artifact folder, local or ``s3://``.
        trusted: accept artifact files without a recorded hash.
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when one is visible).
        dtype, batch_size, cache_size, threads: encoder settings (:class:`aptray.embed.encoder.SentenceEncoder`).
    """

    def __init__(
        self,
        artifact: str,
        trusted: bool = False,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 64,
        cache_size: int = 100_000,
        threads: int | None = None,
    ) -> None:
        self.artifact = artifact
        self.trusted = trusted
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.threads = threads

    @classmethod
    def from_config(cls, cfg: ServeConfig) -> "ArtifactLoader":
        """The loader for ``cfg.artifact`` with the encoder settings of ``cfg``."""
        if not cfg.artifact:
            raise ValueError("serve.artifact is required (a detector artifact folder, local or s3://)")
        return cls(cfg.artifact, cfg.trusted, "cuda" if cfg.num_gpus > 0 else "cpu", cfg.dtype,
                   cfg.encode_batch_size, cfg.cache_size, cfg.torch_threads)

    def __call__(self) -> LoadedDetector:
        from aptray.artifacts import ArtifactError, load_detector, recorded_format, window_of
        from aptray.embed.encoder import SentenceEncoder
        from aptray.templating.base import TEMPLATE_VERSION

        detector = load_detector(self.artifact, expect_template_version=TEMPLATE_VERSION, trusted=self.trusted)
        meta: dict[str, Any] = getattr(detector, "meta_", {}) or {}
        recorded = meta.get("embedder") or {}
        spec = _resolve_embedder(recorded)
        if recorded.get("model_id") and recorded["model_id"] != spec.model_id:
            raise ArtifactError(f"{self.artifact}: trained on {recorded['model_id']!r}, resolved {spec.model_id!r}")
        if recorded.get("revision") and recorded["revision"] != spec.revision:
            raise ArtifactError(f"{self.artifact}: trained on weights revision {recorded['revision']}, "
                                f"the local model is {spec.revision}")
        device = self.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        encoder = SentenceEncoder(spec, device=device, dtype=self.dtype, batch_size=self.batch_size,
                                  lru_size=self.cache_size, threads=self.threads)
        template = TemplateConfig.model_validate(meta.get("template") or {})
        thresholds = meta.get("thresholds") or {}
        source, aspect = recorded_format(meta)
        window = window_of(meta)
        info = ModelInfo(
            artifact_id=artifact_id(self.artifact, meta),
            artifact=self.artifact,
            kind=str(meta.get("kind", type(detector).__name__)),
            params=meta.get("params") or {},
            threshold=float(detector.threshold_),
            threshold_method=thresholds.get("method"),
            tiers={k: float(v) for k, v in detector.tiers_.items()},
            embedder=EmbedderInfo(model_id=spec.model_id, dim=spec.dim, revision=spec.revision),
            template_version=meta.get("template_version"),
            template=template.model_dump(),
            device=device,
            formats=list(EventFormat),
            source=source.value if source else None,
            aspect=aspect.value if aspect else None,
            window=window,
        )
        return LoadedDetector(encoder=encoder, detector=detector, template=template, info=info,  # type: ignore[arg-type]
                              meta=meta, window=window)


def _resolve_embedder(recorded: dict[str, Any]) -> Any:
    """The local model an artifact's ``embedder`` record names."""
    from aptray.embed.registry import ModelNotFoundError, resolve_recorded

    try:
        return resolve_recorded(recorded)
    except ModelNotFoundError as exc:
        raise ValueError(str(exc)) from exc
