"""The model side of a replica: the detector artifact, the encoder it was trained with, and their metadata.

A *loader* is a picklable callable that runs on the replica and returns the :class:`LoadedModels` it serves
(one :class:`LoadedDetector` per name); :class:`ArtifactLoader` is the production one (artifact folders, local
or ``s3://``), and tests may pass any small real loader to :func:`aptray.serve.app.build_deployment` instead.
"""

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from aptray.config import ServeConfig, Source, TemplateConfig
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


#: The name the ``artifact`` of a server is served under (requests that name no model get it).
DEFAULT_MODEL = "default"


@dataclass
class LoadedModels:
    """Every detector a replica serves, by name (requests pick one with ``model``; :attr:`default` otherwise).

    Detectors trained on the same embedder share one encoder (and its LRU), so a replica holding the detectors
    of several sources loads the sentence model once.
    """

    models: dict[str, LoadedDetector]
    default: str = DEFAULT_MODEL

    @classmethod
    def single(cls, model: LoadedDetector) -> "LoadedModels":
        """One detector, served as the default."""
        return cls({DEFAULT_MODEL: model})


Loader = Callable[[], LoadedModels]


def artifact_id(path: str, config: dict[str, Any]) -> str:
    """``<folder name>@<first 12 hex digits of the sha256 of its config>``: changes with any retraining."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{path.rstrip('/').rsplit('/', 1)[-1]}@{digest}"


class ArtifactLoader:
    """Loads detector artifacts and the encoders they were trained with (runs on the replica).

    Args:
        artifact: the default artifact folder, local or ``s3://``.
        trusted: accept artifact files without a recorded hash.
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when one is visible).
        dtype, batch_size, cache_size, threads: encoder settings (:class:`aptray.embed.encoder.SentenceEncoder`);
            ``threads`` None: this node's cores shared by ``sharers`` replicas (counted on the replica's node).
        models: more artifacts, by the name requests use.
        sharers: replicas that may share a node.
        allow_format_mismatch: the server scores events of any format (what each model's ``formats`` lists).
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
        models: dict[str, str] | None = None,
        sharers: int = 1,
        allow_format_mismatch: bool = False,
    ) -> None:
        self.artifact = artifact
        self.allow_format_mismatch = allow_format_mismatch
        self.trusted = trusted
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.threads = threads
        self.models = dict(models or {})
        self.sharers = sharers

    @classmethod
    def from_config(cls, cfg: ServeConfig) -> "ArtifactLoader":
        """The loader for ``cfg.artifact`` (and ``cfg.models``) with the encoder settings of ``cfg``."""
        if not cfg.artifact:
            raise ValueError("serve.artifact is required (a detector artifact folder, local or s3://)")
        return cls(cfg.artifact, cfg.trusted, "cuda" if cfg.num_gpus > 0 else "cpu", cfg.dtype,
                   cfg.encode_batch_size, cfg.cache_size, cfg.torch_threads, cfg.models, cfg.replicas_per_node(),
                   cfg.allow_format_mismatch)

    def __call__(self) -> LoadedModels:
        paths = {DEFAULT_MODEL: self.artifact, **{k: v for k, v in self.models.items() if k != DEFAULT_MODEL}}
        encoders: dict[tuple[str, str | None], Encoder] = {}
        return LoadedModels({name: self._load(name, path, encoders) for name, path in paths.items()})

    def _load(self, name: str, path: str, encoders: dict[tuple[str, str | None], Encoder]) -> LoadedDetector:
        from aptray.artifacts import ArtifactError, load_detector, recorded_format, window_of
        from aptray.embed.encoder import SentenceEncoder, node_threads
        from aptray.templating.base import TEMPLATE_VERSION
        from aptray.triage.explain import explanations_of

        detector = load_detector(path, expect_template_version=TEMPLATE_VERSION, trusted=self.trusted)
        meta: dict[str, Any] = getattr(detector, "meta_", {}) or {}
        recorded = meta.get("embedder") or {}
        spec = _resolve_embedder(recorded)
        if recorded.get("model_id") and recorded["model_id"] != spec.model_id:
            raise ArtifactError(f"{path}: trained on {recorded['model_id']!r}, resolved {spec.model_id!r}")
        if recorded.get("revision") and recorded["revision"] != spec.revision:
            raise ArtifactError(f"{path}: trained on weights revision {recorded['revision']}, "
                                f"the local model is {spec.revision}")
        device = self.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        key = (spec.model_id, spec.revision)
        if key not in encoders:
            encoders[key] = SentenceEncoder(spec, device=device, dtype=self.dtype, batch_size=self.batch_size,
                                            lru_size=self.cache_size,
                                            threads=node_threads(self.sharers, self.threads))
        template = TemplateConfig.model_validate(meta.get("template") or {})
        thresholds = meta.get("thresholds") or {}
        source, aspect = recorded_format(meta)
        window = window_of(meta)
        info = ModelInfo(
            name=name,
            artifact_id=artifact_id(path, meta),
            artifact=path,
            kind=str(meta.get("kind", type(detector).__name__)),
            params=meta.get("params") or {},
            threshold=float(detector.threshold_),
            threshold_method=thresholds.get("method"),
            tiers={k: float(v) for k, v in detector.tiers_.items()},
            embedder=EmbedderInfo(model_id=spec.model_id, dim=spec.dim, revision=spec.revision),
            template_version=meta.get("template_version"),
            template=template.model_dump(),
            device=device,
            formats=accepted_formats(source, window is not None, self.allow_format_mismatch),
            source=source.value if source else None,
            aspect=aspect.value if aspect else None,
            explanations=explanations_of(detector, window is not None),
            window=window,
        )
        return LoadedDetector(encoder=encoders[key], detector=detector, template=template,  # type: ignore[arg-type]
                              info=info, meta=meta, window=window)


def accepted_formats(source: Source | None, windowed: bool, allow_mismatch: bool) -> list[EventFormat]:
    """The request formats a model answers (:meth:`OnlineDetector._refuse_format` refuses the others): its
    source's raw events and sentences; every source's where the server allows mismatches or the artifact records
    no source; no sentences for a windowed detector (it needs the events' process and order)."""
    from aptray.io.sources import source_spec

    raw: list[EventFormat] = [f for f in EventFormat if f is not EventFormat.SENTENCE]
    if not allow_mismatch and source is not None:  # the synthetic trace is BETH CSV: it answers beth
        raw = [f for f in raw if source_spec(Source(f.value)).format is source_spec(source).format]
    return raw if windowed else [*raw, EventFormat.SENTENCE]


def _resolve_embedder(recorded: dict[str, Any]) -> Any:
    """The local model an artifact's ``embedder`` record names."""
    from aptray.embed.registry import ModelNotFoundError, resolve_recorded

    try:
        return resolve_recorded(recorded)
    except ModelNotFoundError as exc:
        raise ValueError(str(exc)) from exc
