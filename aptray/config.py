"""The one typed configuration tree, loaded from YAML; the CLI and jobs/ override a few fields.

Every stage reads its own section. Environment variables are used only for secrets and addresses
(API keys, the S3 endpoint, a Ray address), never for behaviour.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aptray.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False, validate_assignment=True)


class Source(StrEnum):
    """Supported trace formats."""

    ADAPT = "adapt"
    BETH = "beth"
    CDM = "cdm"
    AUDITD = "auditd"
    SYNTHETIC = "synthetic"


class Aspect(StrEnum):
    """The five provenance contexts of a process."""

    EVENT = "Event"
    EXEC = "Exec"
    PARENT = "Parent"
    NETFLOW = "Netflow"
    ALL = "All"


class DetectorName(StrEnum):
    """Every detector ``aptray train --model`` builds (:data:`aptray.detectors.registry.DETECTORS` describes each)."""

    AE = "ae"
    VAE = "vae"
    DAE = "dae"
    AE_ATTN = "ae-attn"
    VAE_ATTN = "vae-attn"
    DAE_ATTN = "dae-attn"
    LSTM_AE = "lstm-ae"
    CAE = "cae"
    DEEP_SVDD = "deep-svdd"
    IFOREST = "iforest"
    OCSVM = "ocsvm"
    PCA = "pca"
    DBSCAN = "dbscan"
    AVF = "avf"
    KNN = "knn"
    KNN_WIDE = "knn-wide"
    RARITY = "rarity"
    ENSEMBLE = "ensemble"


class ThresholdMethod(StrEnum):
    """How the alert threshold is chosen."""

    PERCENTILE = "percentile"  # of the benign training scores
    F1 = "f1"  # the F1-optimal cut on a labelled validation split (never the test split)


class Protocol(StrEnum):
    """How an experiment uses labels (``experiment.protocols``)."""

    BENIGN_SPLIT = "benign-split"  # train on benign rows; threshold and model choice on validation; test held out
    UNSUPERVISED = "unsupervised"  # Berrada et al. 2020: fit on every row, no labels; rank every row


class RayConfig(_Section):
    """How to reach (or start) the Ray cluster."""

    address: str | None = Field(None, description="Ray address; None starts a local cluster on loopback.")
    num_cpus: float | None = Field(None, description="CPUs of a local cluster (None: all).")
    num_gpus: float | None = None
    node_ip_address: str = "127.0.0.1"
    include_dashboard: bool = False
    preload_modules: list[str] = Field(
        default_factory=list,
        description="Modules every worker of a local cluster imports when it starts (Ray's "
        "preload_python_modules), e.g. [sentence_transformers]: an encoder actor placed on a started worker then "
        "reaches its first sentence in about 1 s instead of 12 s (bench/cold_start.py), but every "
        "worker pays the import (about 400 MB and several CPU seconds), so a whole small job on 2 cores got slower. "
        "A running cluster takes it from RAY_preload_python_modules in its nodes' environment.")


class IngestConfig(_Section):
    """Reading raw traces into the canonical event table."""

    source: Source = Source.BETH
    aspect: Aspect | None = Field(
        None, description="Process context to build; None: single events (BETH, CDM, auditd) or All (ADAPT)."
    )
    strict: bool = Field(False, description="Stop at the first bad row instead of quarantining it.")
    block_rows: int = Field(20_000, gt=0, description="Rows per output block of a reader.")
    max_field_chars: int = Field(65_536, gt=0)
    join_in_one_task_bytes: int | None = Field(
        None, ge=0,
        description="CDM and auditd inputs up to this size run their join plan in one Ray task (the same plan as "
        "the distributed one, without its hash shuffles); larger ones shuffle across the cluster. None: the "
        "source's own limit (CDM 256 MB, auditd 32 MB: the task peaks at about 4x a CDM input and 14x an auditd "
        "one; bench/ingest.py --join).")
    counts_dir: str | None = Field(
        None, description="Where readers write each input file's line counts (set by the jobs: OUT/_lines).")
    check_format: bool = Field(
        True, description="Stop with a clear error when a file's first block is quarantined entirely (the file is "
        "not of this source), instead of quarantining every line of it.")
    labels: str | None = Field(None, description="Ground-truth file of malicious UUIDs (CDM, auditd).")


class ProcessStyle(StrEnum):
    """How a process context reads as a sentence (:mod:`aptray.templating.process`)."""

    PROSE = "prose"  # "The process performed read and write. It ran /bin/bash. It was started by sshd."
    TERSE = "terse"  # the APT-LLM papers' form: "Process has event read and event write and exec /bin/bash ..."


class TemplateConfig(_Section):
    """Event -> sentence templating."""

    mask: list[str] = Field(
        default_factory=lambda: ["uuid", "hex", "pid"],
        description="Volatile token kinds replaced by placeholders: pid, uuid, ip, port, hex, timestamp, number.",
    )
    process_style: ProcessStyle = Field(
        ProcessStyle.PROSE,
        description="Process contexts as prose (one clause per aspect, lists in English) or terse (the APT-LLM "
        "papers' 'Process has event X and exec Y ...', every attribute named).")


class Backend(StrEnum):
    """The encoder's inference runtime: sentence-transformers' own ``backend=`` (torch, ONNX Runtime, OpenVINO)."""

    TORCH = "torch"
    ONNX = "onnx"
    OPENVINO = "openvino"


class Quantize(StrEnum):
    """The numerics of an exported encoder (sentence-transformers' export functions; torch: always ``none``)."""

    NONE = "none"  # the exported float32 graph
    INT8 = "int8"  # dynamic int8 ONNX (export_dynamic_quantized_onnx_model): CPU
    O4 = "o4"  # ONNX graph optimisation O4, fp16 with fused kernels (export_optimized_onnx_model): CUDA only


#: The (backend, quantize) pairs sentence-transformers can build offline. OpenVINO int8 is left out: its
#: static quantisation calibrates on a hub dataset, which an offline cluster cannot download.
SUPPORTED_VARIANTS: frozenset[tuple[Backend, Quantize]] = frozenset({
    (Backend.TORCH, Quantize.NONE), (Backend.ONNX, Quantize.NONE), (Backend.ONNX, Quantize.INT8),
    (Backend.ONNX, Quantize.O4), (Backend.OPENVINO, Quantize.NONE)})


class Compose(StrEnum):
    """How a sentence becomes one vector (:mod:`aptray.embed.compose`)."""

    AUTO = "auto"  # aspects for ProcessAll contexts in prose, none for everything else
    NONE = "none"  # the whole sentence through the model
    ASPECTS = "aspects"  # each aspect clause of a process sentence through the model, the vectors side by side
    # the same with one aspect left out (its slot zeros): a representation an experiment chooses on validation
    ASPECTS_NO_EVENTS = "aspects-no-events"
    ASPECTS_NO_EXECS = "aspects-no-execs"
    ASPECTS_NO_PARENTS = "aspects-no-parents"
    ASPECTS_NO_NETFLOWS = "aspects-no-netflows"

    @property
    def by_aspect(self) -> bool:
        """Whether the sentence is encoded clause by clause (``aspects`` and its variants)."""
        return self.value.startswith("aspects")

    @property
    def left_out(self) -> str | None:
        """The aspect whose clause is left out (``events``, ``execs``, ``parents``, ``netflows``), or None."""
        return self.value.removeprefix("aspects-no-") if self.value.startswith("aspects-no-") else None


class EmbedConfig(_Section):
    """The embedding stage (sentence-transformers in a Ray Data actor pool)."""

    model: str = Field("minilm", description="Registry name (minilm, mpnet) or a local model directory.")
    batch_size: int = Field(256, gt=0)
    encode_batch_size: int = Field(32, gt=0)
    actors: int = Field(1, gt=0)
    cpus_per_actor: float = Field(0.5, ge=0)
    gpus_per_actor: float = Field(0.0, ge=0)
    dtype: str = Field("auto", description="auto (fp32 on CPU, bf16 on GPU), float32, float16, bfloat16 (torch "
                       "backend only; an exported model's numerics are its quantize).")
    backend: Backend = Field(
        Backend.TORCH, description="torch, onnx or openvino (sentence-transformers' backends; onnx and openvino need "
        "the embed-fast extra). The exported model is built once, offline, beside the packaged one.")
    quantize: Quantize = Field(
        Quantize.NONE, description="none, int8 (dynamic int8 ONNX, CPU) or o4 (optimised fp16 ONNX, CUDA); "
        "backend onnx only for int8 and o4.")
    normalize: bool = True
    compose: Compose = Field(
        Compose.AUTO,
        description="none: one vector per sentence. aspects: a process sentence's clauses (events, executables, "
        "parents, network peers; anything else in a fifth slot) are encoded one by one and their vectors laid side "
        "by side (5 x the model's dimension), so no aspect drowns another. aspects-no-events, -no-execs, "
        "-no-parents, -no-netflows: the same with that aspect left out (its slot zeros). auto: aspects for ProcessAll "
        "contexts templated as prose, none otherwise. Recorded in the embedder record; scoring and serving use the "
        "artifact's.")
    output_float16: bool = False
    cache: str | None = Field(None, description="Embedding cache directory (local or s3://).")
    torch_threads: int | None = Field(
        None, gt=0, description="Torch CPU threads per actor; None: the node's cores / actors (one-node default)."
    )
    join_partitions: int | None = Field(
        None, gt=0, description="Hash partitions of the dedup joins; None: about one per 200k rows, at least 2."
    )
    keep_warm_s: float = Field(
        0.0, ge=0,
        description="Keep the encoder actors loaded this many seconds after a job (named, detached; each exits "
        "after that long without work), so later jobs with the same model and settings skip the model start. "
        "A job whose own actors cannot be placed stops idle warm actors of other models or settings first. "
        "0: the actors end with the job.",
    )
    broadcast_max_distinct: int = Field(
        200_000, ge=0,
        description="Up to this many distinct sentences (counted per block first), dedup and join-back run as a "
        "broadcast: the distinct sentences and their embeddings, never the rows, pass through the driver and no "
        "shuffle runs. Above it (or 0) Ray Data hash-shuffles (groupby + join).",
    )

    @model_validator(mode="after")
    def _supported_variant(self) -> EmbedConfig:
        if (self.backend, self.quantize) not in SUPPORTED_VARIANTS:
            pairs = ", ".join(sorted(f"{b.value}/{q.value}" for b, q in SUPPORTED_VARIANTS))
            raise ValueError(f"embed.backend {self.backend.value} with embed.quantize {self.quantize.value} is not "
                             f"supported; choose one of {pairs}")
        return self


class TrainConfig(_Section):
    """Detector training."""

    model: DetectorName = DetectorName.AE
    epochs: int = Field(15, gt=0)
    batch_size: int = Field(128, gt=0)
    lr: float = Field(1e-3, gt=0)
    hidden: list[int] | None = Field(
        None, description="Encoder widths; None derives them from the embedding dimension (768 -> 512, 128)."
    )
    workers: int = Field(1, gt=0)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    patience: int = Field(3, ge=0)
    val_fraction: float = Field(0.1, ge=0, lt=1)
    seed: int = 0
    max_failures: int = Field(2, ge=0)
    extra: dict[str, Any] = Field(default_factory=dict, description="Model-specific hyperparameters.")
    ensemble_members: list[DetectorName] = Field(
        default_factory=lambda: [DetectorName.KNN, DetectorName.RARITY, DetectorName.AE],
        description="The detectors ``--model ensemble`` fuses (mean place among held-out benign rows' scores); "
        "each is built from this section like a model of its own.")
    ensemble_holdout: float = Field(0.2, gt=0, lt=1, description="Share of benign training rows an ensemble "
                                    "keeps out of its members' training as their reference.")
    storage_path: str | None = Field(None, description="Ray Train checkpoint storage (None: a temp folder).")
    window: int = Field(8, gt=0, description="Events per LSTM-AE window (consecutive events of one process).")
    local_max_rows: int = Field(
        200_000, ge=0,
        description="Up to this many benign training rows (with one worker and no GPU), train in this process: "
        "the same model code and artifact, without Ray Train's start-up; above it (or workers > 1), Ray Train DDP.")
    distinct: bool = Field(
        True, description="Train on the distinct sentences weighted by their row counts (memory and work follow "
        "the distinct sentences, the objective the rows'); false: every row (windowed detectors always use rows).")
    distinct_epoch_rows: int = Field(
        8192, gt=0, description="Rows drawn per epoch (by count) when training on distinct sentences: at least the "
        "distinct count, at most the rows they stand for. An epoch's cost no longer grows with the trace.")
    baseline_max_rows: int = Field(
        200_000, gt=0, description="Baselines fit on a seeded sample of at most this many training rows (drawn "
        "from the distinct sentences by their counts; its size is recorded in the artifact).")
    explain_max_sentences: int = Field(
        20_000, ge=0, description="The most frequent distinct benign training sentences kept in the artifact "
        "(benign.safetensors) to name each alert's nearest benign behaviour; 0: none.")
    explain_max_attributes: int = Field(
        50_000, ge=0, description="Process contexts: the most frequent benign attribute values kept per aspect "
        "(event types, executables, parents, peers; in benign.safetensors) to name each alert's attributes never "
        "seen in benign training. Single events: the actions with the most benign rows whose most frequent "
        "benign value of each value field (object, args, return value, executables) is kept, the counterfactual "
        "attribution puts in its place, and the most frequent benign (condition, value) pairs per part, kept as "
        "64-bit hashes, to name the parts an alert has that benign training never had beside their condition "
        "(attribution tries those first). 0: none.")


class ThresholdConfig(_Section):
    """How the alert threshold and tiers are chosen."""

    method: ThresholdMethod = Field(ThresholdMethod.PERCENTILE,
                                    description="percentile (of benign training scores) or f1 (validation).")
    percentile: float = Field(99.0, gt=0, lt=100)
    tiers: dict[str, float] = Field(
        default_factory=lambda: {"low": 95.0, "medium": 99.0, "high": 99.9},
        description="Tier name -> percentile of benign training scores.",
    )


class ScoreConfig(_Section):
    """Batch scoring."""

    artifact: str | None = None
    write_alerts: bool = True
    trusted: bool = Field(False, description="Accept artifact files without a recorded sha256 (hand-made "
                                             "artifacts); a recorded hash that does not match is refused anyway.")
    allow_format_mismatch: bool = Field(
        False, description="Score events of another source or process context than the artifact was trained on "
        "(refused by default: the scores would mean nothing).")
    group_bytes: int = Field(1 << 30, gt=0, description="Input bytes per resumable group of files.")
    incident_window_s: float = Field(3600.0, gt=0, description="Alerts of one process lineage further apart than "
                                     "this (seconds) start a new incident.")
    attribute_alerts: bool = Field(
        True, description="Name each alert's top part: the event field or context aspect whose removal lowers its "
        "score most (the variants embedded through the embedding cache; not for windowed detectors).")
    scorer_cpus: float = Field(
        0.25, ge=0, description="CPUs reserved by the detector actor (a small MLP pass; leaves CPUs for reads)."
    )


class ServeAutoscaling(_Section):
    """Replica autoscaling of the online detector (Ray Serve ``autoscaling_config``)."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(4, gt=0)
    target_ongoing_requests: float = Field(8.0, gt=0, description="Requests in flight per replica to aim at.")
    upscale_delay_s: float = Field(10.0, ge=0)
    downscale_delay_s: float = Field(120.0, ge=0)


class ServeConfig(_Section):
    """The online Ray Serve endpoint (also the typed arguments of ``aptray.serve.app:build_app``)."""

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [n for n in value if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", n)]
        if bad:
            raise ValueError(f"model names are 1-64 letters, digits, '_', '.' or '-': {bad}")
        if "default" in value:  # aptray.serve.loader.DEFAULT_MODEL: the artifact's own name (it was dropped)
            raise ValueError("'default' names serve.artifact (the default model): give this one another name, or "
                             "make it serve.artifact")
        return value

    artifact: str | None = Field(None, description="Detector artifact folder (local or s3://): the default model.")
    models: dict[str, str] = Field(
        default_factory=dict,
        description="More artifacts on the same replicas, by name (a request picks one with 'model'); detectors "
        "of one embedder share its encoder.")
    trusted: bool = Field(False, description="Allow artifact files without a recorded hash.")
    allow_format_mismatch: bool = Field(
        False, description="Score requests of another format than the artifact was trained on (422 by default).")
    host: str = Field("127.0.0.1", description="HTTP bind address (cluster-wide Serve option; loopback by default).")
    port: int = Field(8000, gt=0, lt=65536)
    app_name: str = "aptray"
    route_prefix: str = "/"
    replicas: int = Field(1, gt=0, description="Fixed replica count (ignored when autoscaling is set).")
    autoscaling: ServeAutoscaling | None = None
    max_ongoing_requests: int = Field(64, gt=0, description="Requests a replica accepts at once.")
    max_batch_size: int = Field(64, gt=0, description="Events per micro-batch across concurrent requests.")
    batch_wait_timeout_s: float = Field(
        0.0, ge=0, description="When the model is idle, how long a new micro-batch waits for more requests; 0: "
        "run at once (under load a batch holds everything that queued while the previous one ran)."
    )
    batch_refill: float = Field(
        0.0, ge=0, le=1, description="After a micro-batch, the next one may wait, from its end for at most this "
        "share of its duration, for the clients it answered to send again (clients that wait for each answer "
        "otherwise take turns in smaller batches); a lone client never waits; 0: never."
    )
    max_request_bytes: int = Field(4 * 1024 * 1024, gt=0, description="Larger request bodies get 413.")
    max_events_per_request: int = Field(1024, gt=0)
    api_key_file: str | None = Field(None, description="File of API keys, one per line (besides $APTRAY_API_KEY).")
    require_api_key: bool = Field(True, description="Refuse requests without a valid key (and refuse to start "
                                                    "without a configured key).")
    num_cpus: float = Field(0.5, ge=0, description="CPUs reserved per replica.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica; > 0 encodes and scores on CUDA.")
    dtype: str = Field("auto", description="Encoder dtype: auto (fp32 on CPU, bf16 on GPU), float32, float16...")
    encode_batch_size: int = Field(64, gt=0, description="Sentences per encoder forward pass.")
    cache_size: int = Field(100_000, ge=0, description="Distinct sentences kept in each replica's embedding LRU.")
    torch_threads: int | None = Field(
        None, gt=0, description="Torch CPU threads per replica (None: the node's cores shared by the replicas, "
        "`replicas` or autoscaling's `max_replicas`, at least one; what the embed job's CPU actors get). On an idle "
        "2-core machine one replica on 2 threads did 131.7 events/s at concurrency 32 against 63.8 on one, and with "
        "another process keeping a core busy 71.2 against 66.4 (bench/serve.py). The raw model on 2 threads "
        "collapses at batch 1 under such load (OpenMP threads spin-wait on a preempted one); a replica did not.")
    omp_passive: bool = Field(
        True, description="OMP_WAIT_POLICY=PASSIVE in the replica's environment: torch's OpenMP threads sleep when a "
        "forward pass ends instead of spinning, so the replica's event loop (parsing, templating, answering) and Ray's "
        "threads get the cores between passes. A/B on a 2-core machine, two runs each (bench/serve.py --levels 1 32 "
        "[--omp-active], one BETH event per request): at concurrency 1 p50 30.7 and 31.2 ms against 34.4 and 33.4 "
        "spinning, p99 43.9 and 47.4 against 53.8 and 51.7, the replica's CPU per request 37.2 and 37.6 ms against "
        "41.6; at 32 the same within noise (106.5 and 113.6 events/s against 98.4 and 116.1). False leaves the "
        "nodes' setting (the embed job's actors keep spinning: their passes follow each other).")
    access_log: bool = Field(True, description="Ray Serve's access log line per request, in the replica's log file "
                                               "under Ray's log folder (never on the terminal); off saves its cost "
                                               "per request (bench/serve.py measures both).")
    direct_ingress_port: int | None = Field(
        None, gt=0, lt=65536,
        description="Also answer HTTP straight from the replica (Ray Serve direct ingress, no proxy hop): the "
        "first replica on a node listens on this port, the next ones above it. Ray reads it when the cluster "
        "starts: `aptray serve` sets it for the local cluster it starts; on a running cluster set "
        "RAY_SERVE_ENABLE_DIRECT_INGRESS=1 (and HAProxy, RAY_SERVE_ENABLE_HA_PROXY=1, to spread clients over "
        "several replicas) in the nodes' environment.",
    )
    direct_ingress_drain_s: float = Field(
        2.0, ge=0,
        description="With direct ingress, how long a stopping replica keeps answering before it closes (Ray "
        "Serve's RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S, 30 s by default, meant for a cloud load balancer "
        "to deregister the replica first); requests in flight finish either way. Set with direct_ingress_port for "
        "the cluster `aptray serve` starts, where clients reach the replica directly: Ctrl-C or SIGTERM stopped it in "
        "about 30 s before, so `docker stop`'s 10 s grace killed it first. Behind a load balancer, raise it to the "
        "balancer's deregistration delay.")
    proxy_port: int | None = Field(
        None, gt=0, lt=65536,
        description="Port of Serve's own HTTP proxy when it must not be `port`: where `aptray serve` lets the "
        "replica answer on `port` itself (its default on the cluster it starts), the proxy moves to this port "
        "(default port + 1000, above the replicas' port range).",
    )

    def replicas_per_node(self) -> int:
        """How many replicas may share one node's cores: ``replicas``, or autoscaling's ``max_replicas``."""
        return self.autoscaling.max_replicas if self.autoscaling is not None else self.replicas


def _unwindowed_detectors() -> list[DetectorName]:
    return [d for d in DetectorName if d is not DetectorName.LSTM_AE]


class ExperimentConfig(_Section):
    """The evaluation experiment: every dataset x aspect x embedder x detector x seed (``aptray experiment``)."""

    embedders: list[str] = Field(default_factory=lambda: ["minilm", "mpnet"],
                                 description="Embedder registry names; one not installed is skipped with a log line.")
    compose: list[Compose] = Field(
        default_factory=lambda: [Compose.AUTO],
        description="Compositions to run per embedder (embed.compose); a composed embedder is reported as "
        "<name>+aspects (+aspects-no-netflows...). [none, aspects] compares both on the ProcessAll targets; the "
        "aspects-no-* variants add representations the choice on validation may pick.")
    detectors: list[DetectorName] = Field(
        default_factory=lambda: _unwindowed_detectors(),
        description="Detectors (torch models and baselines); windowed ones (lstm-ae) need ordered events.",
    )
    aspects: list[Aspect] | None = Field(None, description="Aspects to run; None: every aspect file present.")
    seeds: int = Field(5, gt=0, description="Seeds 0..seeds-1; each draws its own split and initialisation.")
    protocols: list[Protocol] = Field(
        default_factory=lambda: [Protocol.BENIGN_SPLIT],
        description="benign-split (train on benign rows, choose on validation, report test) and/or unsupervised "
        "(fit on every row without labels, rank every row: Berrada et al. 2020).")
    fusion_size: int = Field(3, ge=0, description="Detectors in the rank fusion, the best on validation AUC-ROC "
                             "per seed (0: no fusion).")
    test_fraction: float = Field(0.3, gt=0, lt=1, description="Share of benign rows held out for testing only.")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="Share of benign rows for threshold choice.")
    threshold: ThresholdMethod = Field(
        ThresholdMethod.F1,
        description="f1 (validation, falls back to percentile without positives) or percentile (of benign training "
        "scores).")
    top_k: int = Field(10, gt=0, description="Anomalies listed in the report; cut-off of nDCG@k.")
    min_train_rows: int = Field(8, gt=0, description="Skip a dataset x aspect with fewer benign training rows.")
    task_cpus: float = Field(1.0, gt=0, description="CPUs per fit task (one detector x seed).")
    tsne_points: int = Field(2000, ge=0, description="Rows in the t-SNE plot (all malicious kept); 0 disables it.")
    epochs: int | None = Field(None, gt=0, description="Torch detector epochs; None: train.epochs.")


class AptrayConfig(_Section):
    """The whole tree."""

    input: str | None = None
    out: str | None = None
    ray: RayConfig = Field(default_factory=RayConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    template: TemplateConfig = Field(default_factory=TemplateConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    threshold: ThresholdConfig = Field(default_factory=ThresholdConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> AptrayConfig:
    """Load and validate a YAML config; ``overrides`` are dotted keys (``{"embed.actors": 2}``).

    Args:
        path: YAML file, or None for the defaults.
        overrides: dotted-key values applied on top of the file (None values are ignored).

    Returns:
        The validated config.

    Raises:
        pydantic.ValidationError: naming the offending field.
    """
    data: dict[str, Any] = {}
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"config file {path} not found (the --config option)")
        with open(path, encoding="utf-8") as fh:
            try:
                loaded = yaml.safe_load(fh) or {}
            except yaml.YAMLError as exc:  # a user's file: where and what, not the parser's traceback
                mark = getattr(exc, "problem_mark", None)
                where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
                problem = getattr(exc, "problem", None) or type(exc).__name__
                raise ConfigError(f"{path}{where}: not valid YAML ({problem}); fix the --config file") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config file must hold a mapping at the top level (section: keys)")
        data = loaded
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return AptrayConfig.model_validate(data)
