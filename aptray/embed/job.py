"""The embed job: sentences -> embeddings on a Ray Data actor pool, each distinct sentence encoded once.

Plan (the rows never reach the driver):

1. Each block of rows is reduced to its distinct (``sentence_hash``, ``sentence``) pairs by a Ray Data
   map (logs repeat, so this is small); the pairs are counted.
2. Broadcast path (at most ``embed.broadcast_max_distinct`` pairs, the common case): the pairs come to the
   driver and are deduplicated there; cache hits are found by a filtered read of the cache; the misses go
   through :class:`Embedder` (an actor pool; the model loads once per actor) and are appended to the cache;
   the (hash -> embedding) table is put in the object store once and every block of rows looks its
   embeddings up in it (a map, no shuffle).
3. Shuffle path (more distinct sentences than that): a Ray Data hash groupby gives the distinct
   sentences, a left-outer join with the cache splits hits from misses, misses are encoded as above, and
   every row is joined back by a Ray Data hash join.

Either way every input row gets exactly one embedding and each distinct sentence is encoded at most once.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from aptray.config import AptrayConfig, Aspect, Compose, EmbedConfig, Source
from aptray.embed.cache import (
    EMBEDDING,
    HASH,
    EmbeddingCache,
    cache_schema,
    embedding_type,
    first_per_hash,
    to_embedding_array,
)
from aptray.embed.encoder import node_threads
from aptray.io.fs import check_output, join, read_parquet, resolve

if TYPE_CHECKING:
    import ray.data

    from aptray.embed.pool import EncoderPool
    from aptray.embed.registry import ModelSpec

log = logging.getLogger(__name__)

#: Columns of ``OUT/embeddings`` (labels are carried for training and evaluation, never used as features).
#: ``host`` and ``pid`` name an event's process for windowed detectors (:mod:`aptray.windows`).
OUTPUT_COLUMNS: tuple[str, ...] = ("record_id", HASH, "sentence", EMBEDDING, "malicious", "sus", "source_file",
                                   "line", "host", "pid")
_ROW_COLUMNS: tuple[str, ...] = ("record_id", "sentence", HASH, "malicious", "sus", "source_file", "line", "host",
                                 "pid")
_ROWS_PER_PARTITION = 200_000


def output_schema(dim: int, float16: bool = False) -> pa.Schema:
    """Schema of the ``embeddings/`` Parquet files."""
    return pa.schema([
        pa.field("record_id", pa.string()),
        pa.field(HASH, pa.string()),
        pa.field("sentence", pa.string()),  # the text (nearest benign sentences in the artifact, explanations)
        pa.field(EMBEDDING, embedding_type(dim, float16)),
        pa.field("malicious", pa.int8()),
        pa.field("sus", pa.int8()),
        pa.field("source_file", pa.string()),
        pa.field("line", pa.int64()),
        pa.field("host", pa.string()),
        pa.field("pid", pa.int64()),
    ])


def actor_threads(cfg: EmbedConfig) -> int | None:
    """Torch threads per CPU actor: the config value, else the node's cores shared by the actors."""
    if cfg.gpus_per_actor > 0:
        return None
    return node_threads(cfg.actors, cfg.torch_threads)


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


def partitions(cfg: EmbedConfig, rows: int, minimum: int = 2) -> int:
    """Hash partitions of the joins for ``rows`` rows: the configured number, else one per 200k rows."""
    return cfg.join_partitions or max(minimum, math.ceil(rows / _ROWS_PER_PARTITION))


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


def check_input(input_uri: str, cfg: AptrayConfig, source: str | None) -> None:
    """Refuse an input the embed stage cannot read, before any work: a raw trace of ``source`` with no file of its
    kind (:func:`aptray.io.files.list_input`), or a folder that is not a templatize output.

    Raises:
        FileNotFoundError: nothing at ``input_uri``, or no ``sentences/`` Parquet in it (and no ``source``).
        WrongSourceError: files are there, none of the source's kind.
    """
    from aptray.io.files import list_input
    from aptray.io.fs import list_files
    from aptray.io.sources import source_spec

    if source is not None:
        list_input(input_uri, source_spec(Source(source)).suffixes, cfg.ingest)
        return
    try:
        list_files(join(input_uri, "sentences"), (".parquet",))
    except FileNotFoundError:
        list_files(input_uri)  # nothing there at all: that error names the input
        raise FileNotFoundError(f"{input_uri} is not a templatize output (no sentences/*.parquet in it): pass "
                                "--source SRC to embed a raw trace (a job: --set ingest.source=SRC)") from None


def upstream_manifest(input_uri: str, cfg: AptrayConfig, source: str | None) -> dict[str, Any]:
    """What the sentences to embed were made from: a templatize output's ``manifest.json``, or for a raw trace of
    ``source`` (templatized on the fly) the same keys from ``cfg`` (source, input, aspect, template version and
    settings)."""
    from aptray.templating.base import TEMPLATE_VERSION

    if source is not None:
        from aptray.templating.job import effective_aspect

        aspect = effective_aspect(Source(source), cfg.ingest.aspect)
        return {"source": str(Source(source)), "input": input_uri, "aspect": aspect.value if aspect else None,
                "template_version": TEMPLATE_VERSION, "template": cfg.template.model_dump(mode="json")}
    fs, root = resolve(input_uri)
    try:
        with fs.open_input_stream(join(root, "manifest.json")) as fh:
            manifest: dict[str, Any] = json.loads(fh.read())
            return manifest
    except FileNotFoundError:
        log.warning("%s has no manifest.json; assuming template version %s", input_uri, TEMPLATE_VERSION)
        return {"template_version": TEMPLATE_VERSION}


def composition(ecfg: EmbedConfig, aspect: Aspect | str | None, template: Mapping[str, Any] | None) -> Compose:
    """What ``embed.compose`` means for sentences of ``aspect`` made with ``template`` settings
    (:func:`aptray.embed.compose.effective`)."""
    from aptray.config import ProcessStyle
    from aptray.embed.compose import effective

    return effective(ecfg.compose, aspect, (template or {}).get("process_style") or ProcessStyle.PROSE)


def model_for(ecfg: EmbedConfig, aspect: Aspect | str | None, template: Mapping[str, Any] | None) -> ModelSpec:
    """The model ``ecfg`` asks for, composed as ``embed.compose`` means for sentences of ``aspect`` made with
    ``template`` settings."""
    from aptray.embed.registry import resolve as resolve_model

    return resolve_model(ecfg.model, ecfg.backend, ecfg.quantize).composed(composition(ecfg, aspect, template))


def _read_rows(
    input_uri: str, out_uri: str, cfg: AptrayConfig, source: str | None, made_of: dict[str, Any]
) -> tuple[Any, int, dict[str, Any]]:
    """The input rows as a lazy dataset, their number (from Parquet footers) and the input's manifest
    (``made_of``, :func:`upstream_manifest`, with the read counts of a raw trace added)."""
    upstream = made_of
    if source is not None:
        from aptray.io.files import line_counts, settle_lines
        from aptray.io.quarantine import count_rows, quarantine_reasons
        from aptray.templating.job import SENTENCES_SCHEMA, clear_dir, ensure_parquet, sentences_dataset

        sentences_uri, quarantine_uri, lines_uri = (join(out_uri, d) for d in ("sentences", "quarantine", "_lines"))
        for d in (sentences_uri, quarantine_uri, lines_uri):  # a rerun replaces them
            clear_dir(d)
        fs, path = resolve(sentences_uri)
        rcfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"counts_dir": lines_uri})})
        sentences_dataset(Source(source), input_uri, rcfg, quarantine_uri).write_parquet(path, filesystem=fs)
        ensure_parquet(sentences_uri, SENTENCES_SCHEMA)  # an input that keeps no row: an empty, typed output
        quarantined = count_rows(quarantine_uri)
        upstream = {**made_of, "read": {"quarantined": quarantined,
                                        "lines": settle_lines(line_counts(lines_uri), quarantined),
                                        "quarantine_reasons": quarantine_reasons(quarantine_uri)}}
    else:
        sentences_uri = join(input_uri, "sentences")
        fs, path = resolve(sentences_uri)
    rows = read_parquet(path, fs)
    present = [c for c in _ROW_COLUMNS if c in rows.columns()]
    missing = {"sentence", HASH, "record_id"} - set(present)
    if missing:
        raise ValueError(f"{sentences_uri} lacks column(s) {sorted(missing)}: is it a templatize output?")
    return rows.select_columns(present), _count_rows(sentences_uri), upstream


def _block_distinct(batch: pa.Table) -> pa.Table:
    """The distinct (``sentence_hash``, ``sentence``) pairs of a table (first sentence per hash)."""
    grouped = batch.select([HASH, "sentence"]).group_by(HASH, use_threads=False).aggregate([("sentence", "first")])
    return grouped.select([HASH, "sentence_first"]).rename_columns([HASH, "sentence"])


def _keep_hashes(batch: pa.Table, hashes: list[Any]) -> pa.Table:
    """``map_batches`` UDF on cache shards: the rows whose hash is in the broadcast set ``hashes[0]``."""
    wanted = _broadcast(hashes[0])
    return batch.filter(pc.is_in(batch.column(HASH), value_set=wanted)).select([HASH, EMBEDDING])


_BROADCAST: dict[str, Any] = {}


def _broadcast(ref: Any) -> Any:
    """``ray.get`` of a broadcast object, kept per worker process (one at a time) so blocks fetch it once."""
    import ray

    key = ref.hex()
    if key not in _BROADCAST:
        _BROADCAST.clear()
        _BROADCAST[key] = ray.get(ref)
    return _BROADCAST[key]


def _attach(batch: pa.Table, table: list[Any]) -> pa.Table:
    """``map_batches`` UDF: each row's embedding looked up by hash in the broadcast (hash, embedding) table."""
    lookup: pa.Table = _broadcast(table[0])
    positions = pc.index_in(batch.column(HASH), value_set=lookup.column(HASH))
    if positions.null_count:
        raise RuntimeError(f"{positions.null_count} row(s) have no embedding (hash missing from the lookup table)")
    return batch.append_column(pa.field(EMBEDDING, lookup.schema.field(EMBEDDING).type),
                               lookup.column(EMBEDDING).take(positions))


def _to_table(ds: Any, schema: pa.Schema) -> pa.Table:
    """A small materialised dataset as one Arrow table on the driver."""
    import ray

    tables = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    return pa.concat_tables(tables).combine_chunks() if tables else schema.empty_table()


def early_pool(spec: ModelSpec, ecfg: EmbedConfig) -> EncoderPool | None:
    """Encoder actors started at the job's start, so that their start-up overlaps the job's first passes.

    None where they may not be needed: the shuffle plan only (it encodes on a Ray Data actor pool), or a
    non-empty cache that may well hold every sentence (then actors start only if something is missing).
    Warm actors are always looked up: that costs nothing.
    """
    from aptray.embed.pool import EncoderPool

    if ecfg.broadcast_max_distinct <= 0:
        return None
    if ecfg.cache and ecfg.keep_warm_s <= 0 and EmbeddingCache(ecfg.cache, spec).shards():
        return None
    return EncoderPool(spec, ecfg)


def _embeddings(rows: ray.data.Dataset, spec: ModelSpec, ecfg: EmbedConfig, parts: int,
                pool: EncoderPool | None) -> tuple[Any, int, int]:
    """One embedding per distinct sentence hash of ``rows``, from the cache or encoded (and cached).

    Returns:
        The embeddings (a driver-side Arrow table on the broadcast path, a dataset on the shuffle path), the
        distinct count and the number encoded.
    """
    cache = EmbeddingCache(ecfg.cache, spec) if ecfg.cache else None
    pairs = rows.select_columns([HASH, "sentence"]).map_batches(
        _block_distinct, batch_format="pyarrow", batch_size=None).materialize()
    if pairs.count() <= ecfg.broadcast_max_distinct:
        return _embeddings_broadcast(pairs, spec, ecfg, cache, pool)
    if pool is not None:  # the shuffle plan encodes on a Ray Data actor pool: free these actors' resources
        pool.close()
    return _embeddings_shuffle(pairs, spec, ecfg, cache, parts)


def _embeddings_broadcast(pairs: ray.data.Dataset, spec: ModelSpec, ecfg: EmbedConfig,
                          cache: EmbeddingCache | None, pool: EncoderPool | None) -> tuple[pa.Table, int, int]:
    """The broadcast plan: distinct pairs deduplicated on the driver, cache hits by a filtered read, misses
    encoded by ``pool`` (started here when the caller did not)."""
    import ray

    from aptray.embed.pool import EncoderPool

    emb_schema = cache_schema(spec.dim)
    distinct = _block_distinct(_to_table(pairs, pa.schema([pa.field(HASH, pa.string()),
                                                           pa.field("sentence", pa.string())])))
    hits = emb_schema.empty_table()
    cached = cache.dataset() if cache else None
    if cached is not None:
        ref = ray.put(distinct.column(HASH).combine_chunks())
        found = cached.map_batches(_keep_hashes, fn_kwargs={"hashes": [ref]}, batch_format="pyarrow",
                                   batch_size=None).materialize()
        hits = first_per_hash(_to_table(found, emb_schema))  # two jobs may have cached a sentence
    misses = distinct.filter(pc.invert(pc.is_in(distinct.column(HASH), value_set=hits.column(HASH))))
    table = hits.cast(emb_schema)
    if misses.num_rows:
        own = pool is None
        pool = pool or EncoderPool(spec, ecfg)
        try:
            encoded = pool.encode(misses)
        finally:
            if own:
                pool.close()
        if cache is not None:
            cache.append(encoded)
        table = pa.concat_tables([table, encoded.cast(emb_schema)]).combine_chunks()
    return table, distinct.num_rows, misses.num_rows


def _embeddings_shuffle(pairs: ray.data.Dataset, spec: ModelSpec, ecfg: EmbedConfig, cache: EmbeddingCache | None,
                        parts: int) -> tuple[Any, int, int]:
    """The shuffle plan: Ray Data groupby for the distinct sentences, a left-outer join with the cache."""
    cached = cache.dataset() if cache else None
    distinct_ds = distinct_sentences(pairs, max(parts, ecfg.actors))
    hits_ds = None
    if cached is None:
        # Nothing cached: the distinct sentences go straight to the actors (one pass less).
        misses_ds, n_misses, n_distinct = distinct_ds, None, 0
    else:
        # One left-outer join tells hits (embedding present) from misses (null).
        distinct_ds = distinct_ds.materialize()
        n_distinct = distinct_ds.count()
        looked_up = distinct_ds.join(cached, "left_outer", parts, on=(HASH,)).materialize()
        if looked_up.count() > n_distinct:  # two jobs appended the same sentence: keep one row per hash
            looked_up = looked_up.repartition(parts, keys=[HASH]).map_batches(  # equal hashes share a block
                first_per_hash, batch_format="pyarrow", batch_size=None).materialize()
        misses_ds = looked_up.map_batches(_Select(missing=True), batch_format="pyarrow", batch_size=None)
        misses_ds = misses_ds.materialize()
        n_misses = misses_ds.count()
        hits_ds = looked_up.map_batches(_Select(missing=False), batch_format="pyarrow", batch_size=None)

    emb = None
    if n_misses is None or n_misses:
        emb = encode_dataset(misses_ds, spec, ecfg).select_columns([HASH, EMBEDDING]).materialize()
        if cache is not None:
            cache.prepare()
            emb.write_parquet(cache.path, filesystem=cache.filesystem)
    n_encoded = emb.count() if emb is not None else 0
    if n_misses is None:
        n_distinct = n_encoded
    if hits_ds is not None and n_distinct > n_encoded:
        emb = hits_ds if emb is None else emb.union(hits_ds)
    return emb, n_distinct, n_encoded


def embed_rows(rows: ray.data.Dataset, spec: ModelSpec, ecfg: EmbedConfig, parts: int, pool: EncoderPool | None,
               keep_sentence: bool = False) -> tuple[ray.data.Dataset, int, int]:
    """``rows`` (with ``sentence`` and its hash) plus an ``embedding`` column, each distinct sentence encoded once.

    The embed job and the score job embed this way: distinct sentences from the cache or encoded (and
    cached), then joined back to every row (a broadcast lookup, or a hash join above
    ``ecfg.broadcast_max_distinct`` distinct sentences). ``rows`` is read twice: materialise it first.

    Returns:
        The lazy joined rows (``sentence`` dropped unless ``keep_sentence``), the distinct count and the number
        encoded.
    """
    emb, n_distinct, n_encoded = _embeddings(rows, spec, ecfg, parts, pool)
    base = rows if keep_sentence else rows.drop_columns(["sentence"])
    if isinstance(emb, pa.Table):
        import ray

        ref = ray.put(emb)
        joined = base.map_batches(_attach, fn_kwargs={"table": [ref]}, batch_format="pyarrow",  # type: ignore[arg-type]
                                  batch_size=None)
    else:
        joined = base.join(emb, "inner", parts, on=(HASH,))
    return joined, n_distinct, n_encoded


def run_embed(input_uri: str, out_uri: str, cfg: AptrayConfig, source: str | None = None) -> dict[str, Any]:
    """Embed a templatize output (or a raw trace of ``source``) into ``out_uri``.

    Writes ``OUT/embeddings/*.parquet`` (:data:`OUTPUT_COLUMNS`, one row per input row) and
    ``OUT/manifest.json`` (model id, revision, dim, the ``embedder`` record with backend and numerics, template
    version, counts).

    Args:
        input_uri: a templatize output folder, or a raw trace when ``source`` is given.
        out_uri: output folder, local or ``s3://``.
        cfg: the config; ``cfg.embed`` selects model, cache, actors and resources.
        source: the trace format of a raw ``input_uri`` (templatized on the fly into ``OUT/sentences``).

    Returns:
        ``rows``, ``distinct_sentences``, ``encoded``, ``cache_hits``, ``hit_rate``, ``seconds``.
    """
    from aptray.embed.parity import embedder_record
    from aptray.embed.registry import resolve as resolve_model
    from aptray.runtime import check_gpus, init_ray

    check_output(out_uri, cfg.embed.cache)  # a missing s3 bucket: refused before any work
    start = time.perf_counter()
    if source is not None:  # a raw trace: one ProcessParent.csv reads as Parent
        from aptray.templating.job import effective_aspect

        aspect = effective_aspect(Source(source), cfg.ingest.aspect, input_uri)
        cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"aspect": aspect})})
    ecfg = cfg.embed
    base = resolve_model(ecfg.model, ecfg.backend, ecfg.quantize)  # a missing model fails before any input is read
    check_input(input_uri, cfg, source)  # a missing input or a wrong --source: before any work too
    made_of = upstream_manifest(input_uri, cfg, source)
    spec = base.composed(composition(ecfg, made_of.get("aspect"), made_of.get("template")))
    init_ray(cfg.ray)
    check_gpus(ecfg.gpus_per_actor, "embed.gpus_per_actor", "set embed.gpus_per_actor=0 to encode on CPU")
    out_fs, out_root = resolve(out_uri)
    out_fs.create_dir(out_root, recursive=True)
    pool = early_pool(spec, ecfg)
    try:
        rows, n_rows, upstream = _read_rows(input_uri, out_uri, cfg, source, made_of)
        parts = partitions(ecfg, n_rows)
        joined, n_distinct, n_encoded = (embed_rows(rows, spec, ecfg, parts, pool, keep_sentence=True) if n_rows
                                         else (None, 0, 0))
    finally:
        if pool is not None:
            pool.close()
    n_hits = n_distinct - n_encoded
    log.info("%d rows, %d distinct sentences, %d cached, %d encoded", n_rows, n_distinct, n_hits, n_encoded)

    emb_uri = join(out_uri, "embeddings")
    emb_fs, emb_path = resolve(emb_uri)
    if emb_fs.get_file_info(emb_path).type != pafs.FileType.NotFound:
        emb_fs.delete_dir_contents(emb_path)  # a rerun replaces, never appends to, earlier output
    finish = _Finish(spec.dim, ecfg.output_float16)
    if joined is not None:
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
        **upstream.get("read", {}),
        "seconds": round(time.perf_counter() - start, 3),
    }
    manifest = {
        "stage": "embed",
        "model_id": spec.model_id,
        "revision": spec.revision,
        "dim": spec.dim,
        "embedder": embedder_record(spec),  # what trained detectors record: backend, numerics, parity
        "dtype": "float16" if ecfg.output_float16 else "float32",
        "normalize": ecfg.normalize,
        "template_version": upstream.get("template_version"),
        "input": input_uri,
        "source": upstream.get("source"),
        "aspect": upstream.get("aspect"),
        "template": upstream.get("template"),
        "cache": ecfg.cache,
        "counts": counts,
    }
    with out_fs.open_output_stream(join(out_root, "manifest.json")) as fh:
        fh.write(json.dumps(manifest, indent=2).encode())
    log.debug("embed done: %s", counts)
    if "lines" in counts:
        from aptray.io.files import check_lines

        check_lines(counts["lines"], f"embed {input_uri}")
    return counts


def _count_rows(uri: str) -> int:
    from aptray.io.quarantine import count_rows

    return count_rows(uri)
