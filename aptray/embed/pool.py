"""Encoder actors started ahead of need and, on request, kept warm between jobs.

The embed job's broadcast plan holds its distinct sentences on the driver, so it does not need Ray Data to
encode them: it sends length-sorted chunks to a few Ray actors, each holding one
:class:`~aptray.embed.job.Embedder`, and keeps every actor busy with a small work queue. The pool is started
when the job starts, so each actor's process start, library import and model load (about 4.5 s for MiniLM on
CPU, most of it importing sentence-transformers) overlap the job's first pass over the rows instead of
following it.

With ``embed.keep_warm_s > 0`` the actors are named and detached: a later job with the same model, settings
and aptray version on the same cluster finds them loaded, and each actor exits by itself once it has had no
work for ``keep_warm_s`` seconds. Idle warm actors hold their CPUs (and GPUs): a pool whose new actors would not
fit beside them stops the idle ones of other models or settings first, so a job never waits out another
key's idle timeout.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from aptray.embed.cache import EMBEDDING, HASH, cache_schema, to_embedding_array

if TYPE_CHECKING:
    from aptray.config import EmbedConfig
    from aptray.embed.registry import ModelSpec

log = logging.getLogger(__name__)

#: Ray namespace of the kept-warm encoder actors.
NAMESPACE = "aptray"
#: What every kept-warm encoder actor's name starts with (:func:`actor_name`).
_NAME_PREFIX = "aptray-encoder-"
#: Chunks queued on each actor at a time (one running, one waiting, so an actor never idles between calls).
_IN_FLIGHT = 2
#: Seconds without a finished chunk before the pool logs that it is waiting (for actors to be placed, say).
_STALL_WARN_S = 120.0
#: Seconds without work after which another pool may stop a warm actor that holds resources it needs.
_EVICT_IDLE_S = 1.0
#: Attempts per chunk when its actor dies (a warm actor may time out just as a job reaches it).
_ATTEMPTS = 3


class EncoderActor:
    """A Ray actor holding one loaded model; encodes (``sentence_hash``, ``sentence``) chunks.

    Args:
        spec: the resolved model.
        cfg: the embed config (device, dtype, normalisation, threads).
        idle_s: exit after this many seconds without work (0: live as long as its handle).
    """

    def __init__(self, spec: ModelSpec, cfg: EmbedConfig, idle_s: float = 0.0) -> None:
        from aptray.embed.job import Embedder

        self.embedder = Embedder(spec, cfg)
        self._lock = threading.Lock()
        self._busy = 0
        self._last = time.monotonic()
        if idle_s > 0:
            threading.Thread(target=self._exit_when_idle, args=(idle_s,), daemon=True).start()

    def encode(self, chunk: pa.Table) -> pa.Table:
        """The chunk's hashes with their embeddings (the sentences are already distinct)."""
        with self._lock:
            self._busy += 1
        try:
            vectors = self.embedder.encoder.encode_distinct(chunk.column("sentence").to_pylist())
        finally:
            with self._lock:
                self._busy -= 1
                self._last = time.monotonic()
        dim = self.embedder.dim
        return pa.table({HASH: chunk.column(HASH), EMBEDDING: to_embedding_array(vectors, dim)},
                        schema=cache_schema(dim))

    def encoded(self) -> int:
        """Sentences this actor has put through the model since it started."""
        return self.embedder.encoder.encoded

    def idle_for(self) -> float:
        """Seconds since this actor last finished a chunk; 0 while it is encoding one."""
        with self._lock:
            return 0.0 if self._busy else time.monotonic() - self._last

    def _exit_when_idle(self, idle_s: float) -> None:
        import ray

        while True:
            time.sleep(min(idle_s, 5.0))
            with self._lock:
                idle = not self._busy and time.monotonic() - self._last >= idle_s
            if idle:
                log.info("encoder actor idle for %.0f s: exiting", idle_s)
                ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
                return


def pool_key(spec: ModelSpec, cfg: EmbedConfig) -> str:
    """What a warm actor must share with a job to serve it: model, numerics, resources, aptray version."""
    from aptray import __version__
    from aptray.embed.job import actor_threads

    parts = {"model": spec.model_id, "revision": spec.revision, "path": spec.path, "dtype": cfg.dtype,
             "normalize": cfg.normalize, "encode_batch_size": cfg.encode_batch_size,
             "threads": actor_threads(cfg), "cpus": cfg.cpus_per_actor, "gpus": cfg.gpus_per_actor,
             "aptray": __version__}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def actor_name(key: str, slot: int) -> str:
    """The Ray name of kept-warm actor ``slot`` of the pool with :func:`pool_key` ``key``."""
    return f"{_key_prefix(key)}{slot}"


def _key_prefix(key: str) -> str:
    """What the names of the kept-warm actors of the pool with :func:`pool_key` ``key`` start with."""
    return f"{_NAME_PREFIX}{key}-"


class EncoderPool:
    """``cfg.actors`` encoder actors, created (not waited for) on construction.

    Args:
        spec: the resolved model.
        cfg: the embed config: ``actors``, ``cpus_per_actor``, ``gpus_per_actor``, ``batch_size`` (sentences
            per call), ``keep_warm_s``.
    """

    def __init__(self, spec: ModelSpec, cfg: EmbedConfig) -> None:
        self.spec = spec
        self.cfg = cfg
        self.key = pool_key(spec, cfg)
        self._make_room()
        self.actors: list[Any] = [self._start(i) for i in range(cfg.actors)]

    @property
    def warm(self) -> bool:
        """Whether the actors outlive this pool (named, detached, idle timeout)."""
        return self.cfg.keep_warm_s > 0

    def _make_room(self) -> None:
        """Stop idle warm actors of other models or settings where they hold what this pool's new actors need.

        A warm actor keeps its CPUs (and GPUs) while it waits for a job of its own kind; without this, a job with
        other settings would wait for them until their idle timeout. All idle actors of other keys go (they are a
        cache for jobs not running now); actors encoding a chunk are left alone.
        """
        import ray

        warm = _warm_names(_NAME_PREFIX)
        mine = {name for name in warm if name.startswith(_key_prefix(self.key))} if self.warm else set()
        new = sum(actor_name(self.key, slot) not in mine for slot in range(self.cfg.actors))
        need = {"CPU": new * self.cfg.cpus_per_actor, "GPU": new * self.cfg.gpus_per_actor}
        free = ray.available_resources()
        short = {r: n - free.get(r, 0.0) for r, n in need.items() if n > free.get(r, 0.0) + 1e-9}
        if not short:
            return
        others = [name for name in warm if not name.startswith(_key_prefix(self.key))]
        stopped: list[str] = []
        for name in others:
            try:
                actor: Any = ray.get_actor(name, namespace=NAMESPACE)
                idle = float(ray.get(actor.idle_for.remote(), timeout=10))
            except (ValueError, ray.exceptions.RayError):  # exited meanwhile, or too busy to answer: not idle
                continue
            if idle >= _EVICT_IDLE_S:
                ray.kill(actor, no_restart=True)
                stopped.append(name)
        if stopped:
            log.info("stopped %d idle warm encoder actor(s) of other models or settings to make room for %d new "
                     "one(s) (short of %s): %s", len(stopped), new, short, ", ".join(stopped))
        elif others:
            log.warning("this job's %d new encoder actor(s) are short of %s, and the %d warm actor(s) of other "
                        "settings are busy; they will start once those finish", new, short, len(others))

    def _start(self, slot: int) -> Any:
        import ray

        options: dict[str, Any] = {"num_cpus": self.cfg.cpus_per_actor, "num_gpus": self.cfg.gpus_per_actor,
                                   "max_restarts": 1, "max_task_retries": 1}
        if self.warm:
            options.update(name=actor_name(self.key, slot), namespace=NAMESPACE, lifetime="detached",
                           get_if_exists=True)
        actor_cls = ray.remote(EncoderActor)
        return actor_cls.options(**options).remote(self.spec, self.cfg, self.cfg.keep_warm_s)

    def encode(self, table: pa.Table) -> pa.Table:
        """Embeddings of distinct (``sentence_hash``, ``sentence``) rows: a (``sentence_hash``, ``embedding``)
        table, in no particular order.

        Sentences go out sorted by length, so each forward pass pads to a similar length (as one
        ``encode()`` call does), in chunks of at most ``batch_size``, a few per actor at a time.
        """
        import ray
        from ray.exceptions import RayActorError

        if not self.actors:
            raise RuntimeError("this encoder pool is closed")
        if not table.num_rows:
            return cache_schema(self.spec.dim).empty_table()
        table = table.select([HASH, "sentence"])
        table = table.take(pc.sort_indices(pc.utf8_length(table.column("sentence"))))
        size = max(1, min(self.cfg.batch_size, math.ceil(table.num_rows / len(self.actors))))
        pending = deque((table.slice(i, size), 1) for i in range(0, table.num_rows, size))
        running: dict[Any, tuple[int, Any, pa.Table, int]] = {}

        def submit(slot: int) -> None:
            if pending:
                chunk, attempt = pending.popleft()
                actor = self.actors[slot]
                running[actor.encode.remote(chunk)] = (slot, actor, chunk, attempt)

        for slot in range(len(self.actors)):
            for _ in range(_IN_FLIGHT):
                submit(slot)
        out: list[pa.Table] = []
        while running:
            done, _ = ray.wait(list(running), num_returns=1, timeout=_STALL_WARN_S)
            if not done:  # e.g. no node has the GPUs asked for (an autoscaler may still be adding one)
                log.warning("no encoder chunk finished in %.0f s; each actor needs %s CPU and %s GPU, the cluster "
                            "has %s available", _STALL_WARN_S, self.cfg.cpus_per_actor, self.cfg.gpus_per_actor,
                            ray.available_resources())
                continue
            ref = done[0]
            slot, actor, chunk, attempt = running.pop(ref)
            try:
                out.append(ray.get(ref))
            except RayActorError:
                if attempt >= _ATTEMPTS:
                    raise
                log.warning("encoder actor %d died; starting a new one (attempt %d of %d)", slot, attempt + 1,
                            _ATTEMPTS)
                if self.actors[slot] is actor:
                    self.actors[slot] = self._start(slot)
                pending.appendleft((chunk, attempt + 1))
            submit(slot)
        return pa.concat_tables(out)

    def close(self) -> None:
        """Release the actors now, unless they are kept warm (they then exit after their idle timeout)."""
        import ray

        if not self.warm:
            for actor in self.actors:
                ray.kill(actor)
        self.actors = []


def stop_warm(spec: ModelSpec, cfg: EmbedConfig) -> int:
    """Kill the kept-warm encoder actors for this model and these settings now; returns how many there were."""
    return _stop_named(_key_prefix(pool_key(spec, cfg)))


def stop_all_warm() -> int:
    """Kill every kept-warm encoder actor on the cluster, whatever its model and settings; returns how many."""
    return _stop_named(_NAME_PREFIX)


def _warm_names(prefix: str) -> list[str]:
    """Names of the kept-warm encoder actors on the cluster whose names start with ``prefix``."""
    import ray

    return [str(entry["name"]) for entry in ray.util.list_named_actors(all_namespaces=True)
            if entry.get("namespace") == NAMESPACE and str(entry.get("name", "")).startswith(prefix)]


def _stop_named(prefix: str) -> int:
    """Kill the kept-warm encoder actors whose names start with ``prefix``; returns how many."""
    import ray

    stopped = 0
    for name in _warm_names(prefix):
        try:
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
        except ValueError:  # it exited by itself meanwhile
            continue
        stopped += 1
    return stopped
