"""The embed job: sentences -> embeddings on a Ray Data actor pool, each distinct sentence encoded once.

Plan (all on Ray Data; nothing but counts reaches the driver):

1. ``distinct``: group the rows by ``sentence_hash`` (one row per distinct sentence).
2. With a cache: ``misses`` = distinct anti-join cache; ``hits`` = cache semi-join distinct.
3. ``misses`` go through :class:`Embedder` (an actor pool; the model loads once per actor) and are
   appended to the cache as new shards.
4. Every input row is joined back to ``hits`` + newly encoded embeddings and written as Parquet.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from aptray.config import AptrayConfig, EmbedConfig, Source
from aptray.embed.cache import EMBEDDING, HASH, EmbeddingCache, embedding_type, to_embedding_array
from aptray.io.fs import join, resolve

if TYPE_CHECKING:
    import ray.data

    from aptray.embed.registry import ModelSpec

log = logging.getLogger(__name__)

#: Columns of ``OUT/embeddings`` (labels are carried for training and evaluation, never used as features).
OUTPUT_COLUMNS: tuple[str, ...] = ("record_id", HASH, EMBEDDING, "malicious", "sus", "source_file", "line")
_ROW_COLUMNS: tuple[str, ...] = ("record_id", "sentence", HASH, "malicious", "sus", "source_file", "line")
_ROWS_PER_PARTITION = 200_000


def output_schema(dim: int, float16: bool = False) -> pa.Schema:
    """Schema of the ``embeddings/`` Parquet files."""
    return pa.schema([
        pa.field("record_id", pa.string()),
        pa.field(HASH, pa.string()),
        pa.field(EMBEDDING, embedding_type(dim, float16)),
        pa.field("malicious", pa.int8()),
        pa.field("sus", pa.int8()),
        pa.field("source_file", pa.string()),
        pa.field("line", pa.int64()),
    ])


def actor_threads(cfg: EmbedConfig) -> int | None:
    """Torch threads per CPU actor: the config value, else the node's cores shared by the actors."""
    if cfg.gpus_per_actor > 0:
        return None
    return cfg.torch_threads or max(1, (os.cpu_count() or 1) // cfg.actors)


class Embedder:
    """``map_batches`` callable class: adds an ``embedding`` column to a table holding ``sentence``.

    The model loads once per actor in ``__init__``; it runs on CUDA when ``gpus_per_actor > 0``. Repeated
    sentences within and across the batches an actor sees are encoded once (the encoder's LRU).

    Args:
        spec: the resolved model.
        cfg: the embed section of the config (dtype, normalisation, encode batch size, threads).
    """

    def __init__(self, spec: ModelSpec, cfg: EmbedConfig) -> None:
        from aptray.embed.encoder import SentenceEncoder

        device = "cuda" if cfg.gpus_per_actor > 0 else "cpu"
        if device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise RuntimeError("gpus_per_actor > 0 but this actor sees no CUDA device")
        self.encoder = SentenceEncoder(spec, device=device, dtype=cfg.dtype, normalize=cfg.normalize,
                                       batch_size=cfg.encode_batch_size, threads=actor_threads(cfg))
        self.dim = spec.dim

    def __call__(self, batch: pa.Table) -> pa.Table:
        vectors = self.encoder.encode(batch.column("sentence").to_pylist())
        return batch.append_column(pa.field(EMBEDDING, embedding_type(self.dim)),
                                   to_embedding_array(vectors, self.dim))


def _first_of_group(group: pa.Table) -> pa.Table:
    return group.slice(0, 1)


def distinct_sentences(rows: ray.data.Dataset, partitions: int) -> ray.data.Dataset:
    """One row (``sentence_hash``, ``sentence``) per distinct sentence hash, computed by Ray Data.

    A hash-aggregate into ``partitions`` blocks (at least one per actor, so every actor gets work).
    """
    from ray.data.aggregate import Min

    grouped = rows.select_columns([HASH, "sentence"]).groupby(HASH, num_partitions=partitions)
    return grouped.aggregate(Min("sentence", alias_name="sentence"))


class _Select:
    """``map_batches`` UDF on a cache lookup: the misses (``sentence_hash``, ``sentence``) or the hits."""

    def __init__(self, missing: bool) -> None:
        self.missing = missing

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.missing:
            return batch.filter(pc.is_null(batch.column(EMBEDDING))).select([HASH, "sentence"])
        return batch.filter(pc.is_valid(batch.column(EMBEDDING))).select([HASH, EMBEDDING])


def _partitions(cfg: EmbedConfig, rows: int) -> int:
    return cfg.join_partitions or max(2, math.ceil(rows / _ROWS_PER_PARTITION))


def encode_dataset(ds: ray.data.Dataset, spec: ModelSpec, cfg: EmbedConfig) -> ray.data.Dataset:
    """Run :class:`Embedder` over ``ds`` on an actor pool sized from ``cfg``."""
    import ray.data

    return ds.map_batches(
        Embedder,
        fn_constructor_kwargs={"spec": spec, "cfg": cfg},
        batch_size=cfg.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=cfg.actors),
        num_cpus=cfg.cpus_per_actor,
        num_gpus=cfg.gpus_per_actor,
        udf_modifying_row_count=False,
    )


class _Finish:
    """``map_batches`` UDF: order the output columns, fill absent labels, optionally cast to float16."""

    def __init__(self, dim: int, float16: bool) -> None:
        self.schema = output_schema(dim, float16)

    def __call__(self, batch: pa.Table) -> pa.Table:
        cols = []
        for field in self.schema:
            if field.name in batch.column_names:
                cols.append(pc.cast(batch.column(field.name), field.type))
            else:
                cols.append(pa.nulls(batch.num_rows, field.type))
        return pa.Table.from_arrays(cols, schema=self.schema)


def _read_rows(
    input_uri: str, out_uri: str, cfg: AptrayConfig, source: str | None
) -> tuple[Any, int, dict[str, Any]]:
    """The input rows as a lazy dataset, their number (from Parquet footers) and the input's manifest."""
    import ray.data

    from aptray.templating.base import TEMPLATE_VERSION

    if source is not None:
        from aptray.templating.job import sentences_dataset

        sentences_uri = join(out_uri, "sentences")
        fs, path = resolve(sentences_uri)
        if fs.get_file_info(path).type != pafs.FileType.NotFound:
            fs.delete_dir_contents(path)
        sentences_dataset(Source(source), input_uri, cfg, join(out_uri, "quarantine")).write_parquet(
            path, filesystem=fs)
        upstream: dict[str, Any] = {"source": str(Source(source)), "input": input_uri,
                                    "template_version": TEMPLATE_VERSION}
    else:
        sentences_uri = join(input_uri, "sentences")
        fs, root = resolve(input_uri)
        try:
            with fs.open_input_stream(join(root, "manifest.json")) as fh:
                upstream = json.loads(fh.read())
        except FileNotFoundError:
            log.warning("%s has no manifest.json; assuming template version %s", input_uri, TEMPLATE_VERSION)
            upstream = {"template_version": TEMPLATE_VERSION}
        fs, path = resolve(sentences_uri)
    rows = ray.data.read_parquet(path, filesystem=fs, file_extensions=["parquet"])
    present = [c for c in _ROW_COLUMNS if c in rows.columns()]
    missing = {"sentence", HASH, "record_id"} - set(present)
    if missing:
        raise ValueError(f"{sentences_uri} lacks column(s) {sorted(missing)}: is it a templatize output?")
    return rows.select_columns(present), _count_rows(sentences_uri), upstream


def _embeddings(rows: ray.data.Dataset, spec: ModelSpec, ecfg: EmbedConfig, parts: int) -> tuple[Any, int, int]:
    """One embedding per distinct sentence hash of ``rows``, from the cache or encoded (and cached).

    Returns:
        The dataset (``sentence_hash``, ``embedding``), the distinct count and the number encoded.
    """
    cache = EmbeddingCache(ecfg.cache, spec) if ecfg.cache else None
    cached = cache.dataset() if cache else None
    distinct = distinct_sentences(rows, max(parts, ecfg.actors))
    hits = None
    if cached is None:
        # Nothing cached: the distinct sentences go straight to the actors (one pass less).
        misses, n_misses, n_distinct = distinct, None, 0
    else:
        # One left-outer join tells hits (embedding present) from misses (null).
        distinct = distinct.materialize()
        n_distinct = distinct.count()
        looked_up = distinct.join(cached, "left_outer", parts, on=(HASH,)).materialize()
        if looked_up.count() > n_distinct:  # two jobs appended the same sentence: keep one row per hash
            looked_up = looked_up.groupby(HASH).map_groups(_first_of_group, batch_format="pyarrow").materialize()
        misses = looked_up.map_batches(_Select(missing=True), batch_format="pyarrow", batch_size=None)
        misses = misses.materialize()
        n_misses = misses.count()
        hits = looked_up.map_batches(_Select(missing=False), batch_format="pyarrow", batch_size=None)

    emb = None
    if n_misses is None or n_misses:
        emb = encode_dataset(misses, spec, ecfg).select_columns([HASH, EMBEDDING]).materialize()
        if cache is not None:
            cache.prepare()
            emb.write_parquet(cache.path, filesystem=cache.filesystem)
    n_encoded = emb.count() if emb is not None else 0
    if n_misses is None:
        n_distinct = n_encoded
    if hits is not None and n_distinct > n_encoded:
        emb = hits if emb is None else emb.union(hits)
    return emb, n_distinct, n_encoded


def run_embed(input_uri: str, out_uri: str, cfg: AptrayConfig, source: str | None = None) -> dict[str, Any]:
    """Embed a templatize output (or a raw trace of ``source``) into ``out_uri``.

    Writes ``OUT/embeddings/*.parquet`` (:data:`OUTPUT_COLUMNS`, one row per input row) and
    ``OUT/manifest.json`` (model id, revision, dim, template version, counts).

    Args:
        input_uri: a templatize output folder, or a raw trace when ``source`` is given.
        out_uri: output folder, local or ``s3://``.
        cfg: the config; ``cfg.embed`` selects model, cache, actors and resources.
        source: the trace format of a raw ``input_uri`` (templatized on the fly into ``OUT/sentences``).

    Returns:
        ``rows``, ``distinct_sentences``, ``encoded``, ``cache_hits``, ``hit_rate``, ``seconds``.
    """
    from aptray.embed.registry import resolve as resolve_model
    from aptray.runtime import init_ray

    start = time.perf_counter()
    ecfg = cfg.embed
    spec = resolve_model(ecfg.model)
    init_ray(cfg.ray)
    out_fs, out_root = resolve(out_uri)
    out_fs.create_dir(out_root, recursive=True)
    rows, n_rows, upstream = _read_rows(input_uri, out_uri, cfg, source)
    parts = _partitions(ecfg, n_rows)

    emb, n_distinct, n_encoded = _embeddings(rows, spec, ecfg, parts) if n_rows else (None, 0, 0)
    n_hits = n_distinct - n_encoded
    log.info("%d rows, %d distinct sentences, %d cached, %d encoded", n_rows, n_distinct, n_hits, n_encoded)

    emb_uri = join(out_uri, "embeddings")
    emb_fs, emb_path = resolve(emb_uri)
    if emb_fs.get_file_info(emb_path).type != pafs.FileType.NotFound:
        emb_fs.delete_dir_contents(emb_path)  # a rerun replaces, never appends to, earlier output
    finish = _Finish(spec.dim, ecfg.output_float16)
    if emb is not None and n_rows:
        joined = rows.drop_columns(["sentence"]).join(emb, "inner", parts, on=(HASH,))
        joined.map_batches(finish, batch_format="pyarrow", batch_size=None).write_parquet(
            emb_path, filesystem=emb_fs)
        written = _count_rows(emb_uri)
        if written != n_rows:
            raise RuntimeError(f"embed wrote {written} rows for {n_rows} input rows (cache holds bad shards?)")
    else:
        import pyarrow.parquet as pq

        emb_fs.create_dir(emb_path, recursive=True)
        pq.write_table(finish.schema.empty_table(), join(emb_path, "part-empty.parquet"), filesystem=emb_fs)

    counts: dict[str, Any] = {
        "rows": n_rows,
        "distinct_sentences": n_distinct,
        "encoded": n_encoded,
        "cache_hits": n_hits,
        "hit_rate": round(n_hits / n_distinct, 6) if n_distinct else 0.0,
        "seconds": round(time.perf_counter() - start, 3),
    }
    manifest = {
        "stage": "embed",
        "model_id": spec.model_id,
        "revision": spec.revision,
        "dim": spec.dim,
        "dtype": "float16" if ecfg.output_float16 else "float32",
        "normalize": ecfg.normalize,
        "template_version": upstream.get("template_version"),
        "input": input_uri,
        "source": upstream.get("source"),
        "cache": ecfg.cache,
        "counts": counts,
    }
    with out_fs.open_output_stream(join(out_root, "manifest.json")) as fh:
        fh.write(json.dumps(manifest, indent=2).encode())
    log.info("embed done: %s", counts)
    return counts


def _count_rows(uri: str) -> int:
    from aptray.io.quarantine import count_rows

    return count_rows(uri)
