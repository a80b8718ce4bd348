"""The online detector on Ray Serve: the FastAPI ingress deployment and the typed builder.

``build_app`` (import path ``aptray.serve.app:build_app``) takes a :class:`aptray.config.ServeConfig` and
returns the Serve application; ``serve run aptray.serve.app:build_app artifact=DIR`` and a KubeRay RayService
``serveConfigV2`` (``import_path`` + ``args``) use it as is. :func:`build_deployment` is the lower-level
builder that takes any *loader*: a picklable callable that, on the replica, returns a
:class:`~aptray.serve.loader.LoadedDetector` (tests may pass a small real loader; production uses
:class:`~aptray.serve.loader.ArtifactLoader`).

Per replica: the detectors it serves (the default artifact and any named ``models``; a request picks one with
``model``), loaded once, and one sentence encoder per embedder (with its in-memory LRU: the replica's embedding
cache), shared by the detectors trained on it. Requests are parsed and templated in the request's own
coroutine as the artifact's source and context, then their sentences are micro-batched across concurrent
requests by :class:`~aptray.serve.batching.MicroBatcher` (batch size counted in events): whenever the encoder
is free it encodes everything that queued meanwhile, in a worker thread, so the event loop keeps accepting
requests, and scores each sentence in the same pass with the detector its request picked (one call per detector
and pass, no second hop per request); a windowed detector scores each event with the events of its process
before it in the same request, once the request's sentences are encoded. Events of another format than the
artifact's get 422.
(``@serve.batch`` in Ray 2.60 forms batches of one while the model is busy; the batcher's module docstring has
the figures.)

HTTP: ``POST /v1/score``, ``GET /v1/model``, ``GET /v1/models`` (all need an API key), ``GET /healthz``,
``GET /docs`` and ``GET /openapi.json``. Bodies over ``max_request_bytes`` get 413 (by ``Content-Length``
before reading, or while reading a chunked body), invalid bodies 422 with a message naming the field, a missing or wrong
key 401. Nothing is deployed at import time.

This module does not use ``from __future__ import annotations``: Serve reads the builder's argument type
(a pydantic model) from its real annotation.
"""

import asyncio
import json
import logging
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from aptray.config import Aspect, IngestConfig, ServeConfig
from aptray.detectors.thresholds import assign_tiers
from aptray.serve.auth import ApiKeys
from aptray.serve.batching import MicroBatcher
from aptray.serve.loader import ArtifactLoader, LoadedDetector, Loader
from aptray.serve.parse import Job, Prepared, prepare_many
from aptray.serve.schemas import (
    ErrorResponse,
    Health,
    ModelInfo,
    ScoreRequest,
    ScoreResponse,
)

log = logging.getLogger(__name__)
UNAUTHORIZED = "missing or invalid API key"
#: Most requests parsed together (:func:`aptray.serve.parse.prepare_many`).
PREPARE_BATCH = 64

#: A sentence queued for the encoder, tagged with the model (by name) that scores it in the same pass, or None.
Item = tuple[str, str | None]


class _PayloadTooLarge(Exception):
    """Raised while reading a body that grows past the limit."""


class BodyLimit:
    """ASGI middleware: 413 for bodies over ``max_bytes`` (declared length first, then bytes as they arrive)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await _send_json(send, 413, _too_large(self.max_bytes))
                    return
        seen = 0
        replaced = False  # once the body is too large, the app's own answer (400, 422...) is swapped for 413

        async def limited() -> dict[str, Any]:
            nonlocal seen
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _PayloadTooLarge
            return message

        async def guarded(message: dict[str, Any]) -> None:
            nonlocal replaced
            if seen > self.max_bytes:
                if not replaced and message["type"] == "http.response.start":
                    replaced = True
                    await _send_json(send, 413, _too_large(self.max_bytes))
                return
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except _PayloadTooLarge:
            if not replaced:
                await _send_json(send, 413, _too_large(self.max_bytes))


class PostGate:
    """ASGI middleware in front of every POST: 401 without a valid API key, then 415 for a body not declared as
    JSON (``application/json`` or ``+json``). The key comes first: a client without one learns that before
    anything about its body. POST routes rely on it; GET routes check the key themselves."""

    def __init__(self, app: Any, keys: ApiKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
            if not self.keys.check(ApiKeys.presented(headers)):
                await _send_json(send, 401, ErrorResponse(message=UNAUTHORIZED).model_dump(),
                                 [(b"www-authenticate", b"Bearer")])
                return
            media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media != "application/json" and not media.endswith("+json"):
                message = f"unsupported content type {media or '(none)'!r}: send the body as application/json"
                await _send_json(send, 415, ErrorResponse(message=message).model_dump())
                return
        await self.app(scope, receive, send)


def _too_large(limit: int) -> dict[str, Any]:
    return ErrorResponse(message=f"request body larger than {limit} bytes").model_dump()


async def _send_json(send: Any, status: int, body: dict[str, Any],
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


def _json_response(content: dict[str, Any]) -> Any:
    """A JSON response of already-plain data (compact separators, NaN refused like FastAPI does)."""
    from fastapi.responses import Response

    body = json.dumps(content, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()
    return Response(body, media_type="application/json")


def _field_error(e: dict[str, Any]) -> str:
    """One error as ``body.field: message``; a body that is not JSON at all names the character where it broke
    (FastAPI puts that offset where a field name goes: "body.27: JSON decode error")."""
    if e["type"] == "json_invalid":
        at = e["loc"][-1] if len(e["loc"]) > 1 else None
        return "the body is not valid JSON" + (f" (at character {at})" if isinstance(at, int) else "")
    return f"{'.'.join(str(x) for x in e['loc']) or 'body'}: {e['msg']}"


def _field_errors(errors: Any) -> tuple[str, list[dict[str, Any]]]:
    """Pydantic/FastAPI errors -> a message naming each field, and the errors without the input echoed."""
    clean = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors]
    parts = [_field_error(e) for e in clean[:5]]
    more = f" (+{len(clean) - 5} more)" if len(clean) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more, clean


@serve.deployment
@serve.ingress()
class OnlineDetector:
    """The ingress deployment: parses, templatizes, micro-batches, encodes and scores raw events.

    Args:
        loader: called once on the replica; returns the detectors it serves (by name) with their encoders.
        settings: limits, batching and key settings.
    """

    def __init__(self, loader: Loader, settings: ServeConfig) -> None:
        self.settings = settings
        self.keys = ApiKeys.load(settings.api_key_file, settings.require_api_key)
        start = time.perf_counter()
        loaded = loader()
        self.models = loaded.models
        self.default = loaded.default
        self.model = self.models[self.default]
        # requests are read as each artifact's process context (ADAPT aspect, CDM/auditd contexts)
        self._ingest = {name: IngestConfig(aspect=Aspect(m.info.aspect) if m.info.aspect else None)
                        for name, m in self.models.items()}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aptray-score")
        # requests are parsed and templated on a thread of their own, those that queue while it is busy together
        # (prepare_many): a one-event parse costs about what a thirty-event one does
        self._preparer: MicroBatcher[Job, list[Prepared | Exception]] = MicroBatcher(
            prepare_many, PREPARE_BATCH, ThreadPoolExecutor(max_workers=1, thread_name_prefix="aptray-prepare"))
        self.requests = 0
        # one micro-batcher per encoder: the requests of every detector on one embedder share its passes, and each
        # pass also scores its sentences with the detectors they were sent to (one call per detector and pass)
        self._batchers: dict[int, MicroBatcher[Item, tuple[np.ndarray, np.ndarray]]] = {}
        for m in self.models.values():
            if id(m.encoder) not in self._batchers:
                self._batchers[id(m.encoder)] = MicroBatcher(self._pass_of(m.encoder), settings.max_batch_size,
                                                             self._pool, settings.batch_wait_timeout_s,
                                                             settings.batch_refill)
                m.encoder.encode(["warm up"])  # first forward pass is slow; not on a user's request
        log.info("replica ready in %.1f s: %s, %s", time.perf_counter() - start,
                 ", ".join(f"{n}={m.info.artifact_id}" for n, m in self.models.items()), self.keys)

    def _pass_of(self, encoder: Any) -> Any:
        """The micro-batch call of one encoder: encode every queued sentence, then score each with the detector
        it is tagged with (untagged: embedding only), one ``decision_function`` per detector in the pass."""

        def run(items: list[Item]) -> tuple[np.ndarray, np.ndarray]:
            X = encoder.encode([s for s, _ in items])
            scores = np.full(len(items), np.nan)
            names = [n for _, n in items]
            for name in {n for n in names if n is not None}:
                idx = np.array([i for i, n in enumerate(names) if n == name], dtype=np.int64)
                scores[idx] = np.asarray(self.models[name].detector.decision_function(X[idx]), dtype=np.float64)
            return X, scores

        return run

    async def _encode(self, loaded: LoadedDetector, sentences: list[str], scorer: str | None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of ``sentences`` (and their scores by model ``scorer``, NaN when None) through the encoder's
        micro-batcher, in submissions of at most ``max_batch_size``."""
        size = self.settings.max_batch_size
        batcher = self._batchers[id(loaded.encoder)]
        parts = await asyncio.gather(*(batcher.submit([(s, scorer) for s in sentences[i : i + size]])
                                       for i in range(0, len(sentences), size)))
        if not parts:
            return np.zeros((0, loaded.info.embedder.dim), np.float32), np.zeros(0)
        return np.concatenate([x for x, _ in parts]), np.concatenate([v for _, v in parts])

    def __serve_build_asgi_app__(self) -> Any:
        """The FastAPI app of this replica (built after ``__init__`` so routes see its settings and keys)."""
        from fastapi import Depends, FastAPI, HTTPException, Query, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse
        from starlette.exceptions import HTTPException as StarletteHTTPException

        app = FastAPI(
            title="aptray online detector",
            version="1",
            description="Scores raw system events (ADAPT, BETH, auditd, DARPA TC CDM) or sentences with trained "
            "anomaly detectors. Send the API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`.",
        )
        app.add_middleware(BodyLimit, max_bytes=self.settings.max_request_bytes)
        app.add_middleware(PostGate, keys=self.keys)
        errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (401, 404, 413, 415, 422)}

        @app.exception_handler(RequestValidationError)
        async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
            message, details = _field_errors(exc.errors())
            return JSONResponse(status_code=422, content=ErrorResponse(message=message, errors=details).model_dump())

        @app.exception_handler(StarletteHTTPException)  # Starlette's: FastAPI raises it too (a body it cannot
        async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:  # parse, unknown routes)
            return JSONResponse(status_code=exc.status_code, headers=exc.headers,
                                content=ErrorResponse(message=str(exc.detail)).model_dump())

        async def authorized(request: Request) -> None:  # async: no thread-pool hop per request
            if not self.keys.check(ApiKeys.presented(request.headers)):
                raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})

        @app.get("/healthz", response_model=Health, tags=["ops"])
        async def healthz() -> Health:
            """Liveness: the replica has its models loaded."""
            return Health(artifact_id=self.model.info.artifact_id, **self.counters())

        @app.get("/v1/model", response_model=ModelInfo, responses=errors, tags=["detector"],
                 dependencies=[Depends(authorized)])
        async def model(name: str | None = Query(None, alias="model", description="A model name (GET "
                                                                                   "/v1/models); default: the "
                                                                                   "default model.")) -> ModelInfo:
            """Metadata of one loaded detector artifact."""
            if name is not None and name not in self.models:
                raise HTTPException(404, f"no model {name!r}; this server has {', '.join(sorted(self.models))}")
            return self.models[name or self.default].info

        @app.get("/v1/models", response_model=list[ModelInfo], responses=errors, tags=["detector"],
                 dependencies=[Depends(authorized)])
        async def models() -> list[ModelInfo]:
            """Metadata of every loaded detector artifact, the default first."""
            return [self.models[self.default].info] + [m.info for n, m in self.models.items() if n != self.default]

        @app.post("/v1/score", response_model=ScoreResponse, responses=errors, tags=["detector"])  # PostGate: key
        async def score(body: ScoreRequest, request: Request) -> Any:
            """Score a batch of raw events (or sentences): per event its sentence, score, threshold, tier and flag.

            The answer's ``request_id`` is the request's ``X-Request-ID`` (one is made when it has none or an
            unusable one); events known by their line in the request have record ids ``<source>:<request_id>:<line>``.
            """
            if len(body.events) > self.settings.max_events_per_request:
                msg = f"at most {self.settings.max_events_per_request} events per request, got {len(body.events)}"
                return _invalid("events", msg, "too_long")
            if body.model is not None and body.model not in self.models:
                return _invalid("model", f"no model {body.model!r}; this server has "
                                         f"{', '.join(sorted(self.models))}", "unknown_model")
            return await self.score_request(body, request_id_of(request.headers.get("x-request-id")))

        return app

    async def score_request(self, body: ScoreRequest, request_id: str | None = None) -> Any:
        """Parse, templatize and score one request (the route's work, callable through a handle too); ``request_id``
        names it in the answer and in its events' record ids (None: a new one)."""
        request_id = request_id or request_id_of(None)
        start = time.perf_counter()
        name = body.model or self.default
        loaded = self.models[name]
        refused = self._refuse_format(body, loaded, name)
        if refused is not None:
            return refused
        job = Job(body.format, body.events, loaded.template, tuple(body.header) if body.header else None,
                  self._ingest[name])
        prepared = (await self._preparer.submit([job]))[0]
        if isinstance(prepared, Exception):  # a parser bug must not answer 5xx to a client's events; logged in full
            log.error("request events could not be parsed", exc_info=prepared)
            return _invalid("events", f"the events could not be parsed ({type(prepared).__name__})", "unparseable")
        prepared.named(request_id)
        sentences = prepared.sentences
        if not sentences and prepared.rejected and (hint := _other_format(body)) is not None:
            return _invalid("format", hint, "format_mismatch")
        # single-event detectors score in the encoder's pass; a windowed one needs the request's whole order first
        X, scores = await self._encode(loaded, sentences, name if loaded.window is None else None)
        if loaded.window is None:
            tiers = assign_tiers(scores, loaded.detector.tiers_)
        else:
            scores, tiers = await asyncio.get_running_loop().run_in_executor(self._pool, _score_windows, loaded, X,
                                                                              prepared)
        info = loaded.info
        threshold = float(loaded.detector.threshold_)
        aid = info.artifact_id
        # plain dicts in the ScoreResponse shape, encoded once (FastAPI would validate a model a second time)
        results: list[dict[str, Any]] = [
            {"index": i, "record_id": r, "sentence": s, "score": float(sc), "threshold": threshold, "tier": t,
             "is_anomaly": bool(sc >= threshold), "artifact_id": aid}
            for i, r, s, sc, t in zip(prepared.index, prepared.record_ids, sentences, scores, tiers, strict=True)
        ]
        flagged = np.flatnonzero(np.asarray(scores) >= threshold) if body.explain else np.zeros(0, np.int64)
        if len(flagged):
            for j, e in zip(flagged.tolist(), await self._explain(name, X, flagged, scores, prepared), strict=True):
                results[j]["explanation"] = e
        rejected = [{"index": i, "reason": reason} for i, reason in prepared.rejected]
        self.requests += 1
        if rejected:
            log.info("request: %d event(s) scored, %d rejected", len(results), len(rejected))
        return _json_response({"artifact_id": aid, "request_id": request_id, "results": results, "rejected": rejected,
                               "counts": prepared.counts(),
                               "took_ms": round((time.perf_counter() - start) * 1000, 3)})

    async def _explain(self, name: str, X: np.ndarray, flagged: np.ndarray, scores: np.ndarray,
                       prepared: Any) -> list[dict[str, Any]]:
        """The explanations of the ``flagged`` events (:class:`~aptray.serve.schemas.Explanation`), as the batch
        job computes them: nearest benign sentences, attribution (its variants micro-batched through this
        replica's encoder like any request's sentences), unseen attributes."""
        from aptray.score import EXPLAIN_K
        from aptray.triage.attribute import choose, unseen_of, variants

        loaded = self.models[name]
        out: list[dict[str, Any]] = [{} for _ in flagged]
        benign = getattr(loaded.detector, "benign_", None)
        if benign is not None:
            names, sims = benign.explain(X[flagged], EXPLAIN_K)
            for e, n, sim in zip(out, names, sims, strict=True):
                e.update(nearest_benign=n, similarity=sim)
        rows = prepared.rows(flagged.tolist())
        if rows is None:  # sentences sent as such: no fields to remove, no context attributes
            return out
        novel, unseen = unseen_of(rows, benign.vocabulary if benign is not None else None,
                                  benign.values if benign is not None else None)
        if loaded.window is None:
            plan = variants(rows, loaded.template, benign.values if benign is not None else None)
            distinct = plan.distinct()
            found: dict[str, float] = {}
            if distinct:
                _, v = await self._encode(loaded, distinct, name)
                found = dict(zip(distinct, v.tolist(), strict=True))
            part, value, without = choose(plan, found, len(flagged), novel)
            for e, j, p, val, w in zip(out, flagged.tolist(), part, value, without, strict=True):
                if p is not None:
                    e["attribution"] = {"part": p, "value": val, "score": float(scores[j]), "score_without": w}
        for e, u in zip(out, unseen, strict=True):
            if u is not None:
                e["unseen_attributes"] = u
        return out

    def _refuse_format(self, body: ScoreRequest, loaded: LoadedDetector, name: str) -> Any:
        """422 for events of another format than the artifact's (None when they fit, or mismatches are allowed)."""
        from aptray.artifacts import check_format
        from aptray.errors import FormatMismatchError
        from aptray.io.sources import source_spec
        from aptray.serve.parse import format_source

        source = format_source(body.format)
        msg = None
        if source is not None:
            aspect = self._ingest[name].aspect  # the model's context, where the request's source builds it
            try:
                check_format(loaded.meta, source, aspect if aspect in source_spec(source).aspects else None,
                             self.settings.allow_format_mismatch, where="this request")
            except FormatMismatchError as exc:
                msg = f"{exc}; send {loaded.info.source} events (or sentences) to model {name!r}"
        elif loaded.window is not None:
            msg = "a windowed detector scores raw events (their process and order), not sentences"
        return None if msg is None else _invalid("format", msg, "format_mismatch")

    def counters(self) -> dict[str, Any]:
        """Requests, events, micro-batches and parse passes since the replica started (``GET /healthz``)."""
        stats = [b.stats for b in self._batchers.values()]
        recent = [n for st in stats for n in st.sizes]
        return {"requests": self.requests, "events": sum(st.items for st in stats),
                "micro_batches": sum(st.batches for st in stats),
                "largest_micro_batch": max((st.largest for st in stats), default=0),
                "mean_recent_micro_batch": round(sum(recent) / len(recent), 2) if recent else 0.0,
                "parses": self._preparer.stats.batches, "largest_parse": self._preparer.stats.largest,
                "model_busy_s": round(sum(st.busy_s for st in stats), 3),
                "parse_busy_s": round(self._preparer.stats.busy_s, 3)}


def request_id_of(header: str | None) -> str:
    """The request's id: its ``X-Request-ID`` when that is 1-64 letters, digits, '.', '_' or '-' (Serve's own ids
    are UUIDs), else a new UUID."""
    if header is not None and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", header):
        return header
    return str(uuid.uuid4())


def _other_format(body: ScoreRequest) -> str | None:
    """Where no event of a request parsed, the formats its items look like, when not the one it names (batch
    stops a file the same way: :func:`aptray.io.files.check_first_block`); None otherwise."""
    from aptray.io.sources import sniff, source_spec
    from aptray.serve.parse import format_source

    named = format_source(body.format)
    if named is None:
        return None
    lines = [json.dumps(e) if isinstance(e, dict) else e.strip() for e in body.events[:20]]
    found = [s for s in sniff([ln for ln in lines if ln]) if source_spec(s).format is not source_spec(named).format]
    if not found:
        return None
    return (f"no event of this request parses as {body.format.value}; they look like "
            f"{' or '.join(f'{source_spec(s).title} (format {s.value!r})' for s in found)}")


def _invalid(field: str, msg: str, kind: str) -> Any:
    """A 422 answer naming ``body.<field>``."""
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=422, content=ErrorResponse(
        message=f"invalid request: body.{field}: {msg}",
        errors=[{"loc": ["body", field], "msg": msg, "type": kind}]).model_dump())


def _score_windows(loaded: LoadedDetector, X: np.ndarray, prepared: Any) -> tuple[np.ndarray, list[str | None]]:
    """A windowed detector's scores and tiers of a request: each event's window of its process's events in the
    request (:mod:`aptray.windows`)."""
    from aptray.windows import window_index

    if not len(X):
        return np.zeros(0), []
    assert loaded.window is not None
    X = X[window_index(prepared.window_keys, prepared.lines, loaded.window)]
    scores = np.asarray(loaded.detector.decision_function(X), dtype=np.float64)
    return scores, assign_tiers(scores, loaded.detector.tiers_)


def deployment_options(cfg: ServeConfig) -> dict[str, Any]:
    """Serve deployment options from the config: replicas or autoscaling, concurrency, CPUs/GPUs, the replica's
    OpenMP wait policy (``cfg.omp_passive``)."""
    actor: dict[str, Any] = {"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus}
    if cfg.omp_passive:
        actor["runtime_env"] = {"env_vars": {"OMP_WAIT_POLICY": "PASSIVE"}}
    opts: dict[str, Any] = {
        "max_ongoing_requests": cfg.max_ongoing_requests,
        "ray_actor_options": actor,
        "health_check_period_s": 10,
        "logging_config": {"enable_access_log": cfg.access_log},
    }
    if cfg.autoscaling is not None:
        a = cfg.autoscaling
        opts["autoscaling_config"] = {
            "min_replicas": a.min_replicas, "initial_replicas": max(a.min_replicas, 1), "max_replicas": a.max_replicas,
            "target_ongoing_requests": a.target_ongoing_requests, "upscale_delay_s": a.upscale_delay_s,
            "downscale_delay_s": a.downscale_delay_s,
        }
    else:
        opts["num_replicas"] = cfg.replicas
    return opts


def build_deployment(loader: Loader, cfg: ServeConfig) -> serve.Application:
    """The application for any loader (tests pass a small real one; :func:`build_app` the artifact's)."""
    return OnlineDetector.options(**deployment_options(cfg)).bind(loader, cfg)  # type: ignore[attr-defined,no-any-return]


def build_app(args: ServeConfig) -> serve.Application:
    """Typed application builder: ``serve run aptray.serve.app:build_app artifact=DIR`` or a serveConfigV2 entry.

    Args:
        args: the ``serve`` section of the config (``artifact`` required); Serve validates a YAML ``args``
            mapping into it. ``host``/``port`` are cluster-wide HTTP options, set in the Serve config's
            ``http_options``, not here.
    """
    return build_deployment(ArtifactLoader.from_config(args), args)


def direct_ingress_env(cfg: ServeConfig) -> dict[str, str]:
    """Environment that turns on Ray Serve direct ingress on ``cfg.direct_ingress_port`` (empty when unset), with
    ``cfg.direct_ingress_drain_s`` as the replica's drain period when it stops.

    It must be in the environment of the Ray processes when they start (the driver's, for a local cluster).
    """
    if cfg.direct_ingress_port is None:
        return {}
    port = cfg.direct_ingress_port
    return {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1", "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(port),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(port + 999),
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": str(cfg.direct_ingress_drain_s)}


def run(cfg: ServeConfig, loader: Loader | None = None, blocking: bool = False) -> DeploymentHandle:
    """Start Serve on ``cfg.host:cfg.port`` (Ray must be initialised) and deploy the detector.

    Args:
        cfg: serve settings.
        loader: overrides the artifact loader.
        blocking: wait until interrupted.
    """
    serve.start(http_options={"host": cfg.host, "port": cfg.proxy_port or cfg.port})
    app = build_deployment(loader, cfg) if loader is not None else build_app(cfg)
    return serve.run(app, name=cfg.app_name, route_prefix=cfg.route_prefix, blocking=blocking)
