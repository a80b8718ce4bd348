"""The persistent, content-addressed embedding cache: Parquet shards keyed by model, revision and sentence hash.

Layout under a cache root (local or ``s3://``)::

    ROOT/<model-slug>--<revision>/model.json          what the shards hold (model id, revision, dim)
    ROOT/<model-slug>--<revision>/<write-id>_*.parquet   columns sentence_hash, embedding (float32[dim])

The model id and weights revision select the folder, the sentence hash the row, so a shard never needs
rewriting: every job appends the embeddings it computed as new shards, and a later job on the same model
reads them instead of encoding again. Two jobs that run at the same time may both append the same hash;
readers keep one row per hash (:meth:`EmbeddingCache.lookup` keeps the first; the embed job drops the
extras when it finds more cached rows than hashes). Every job adds a shard, so
:meth:`EmbeddingCache.compact` (``aptray embed-cache-compact``) rewrites a grown folder as a few large
shards with one row per hash.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from aptray.embed.registry import ModelSpec, slug
from aptray.io.fs import join, parquet_rows, read_parquet, resolve

log = logging.getLogger(__name__)

HASH = "sentence_hash"
EMBEDDING = "embedding"


def embedding_type(dim: int, float16: bool = False) -> pa.DataType:
    """The fixed-size list type of an embedding column."""
    return pa.list_(pa.float16() if float16 else pa.float32(), dim)


def cache_schema(dim: int) -> pa.Schema:
    """Schema of a cache shard."""
    return pa.schema([pa.field(HASH, pa.string()), pa.field(EMBEDDING, embedding_type(dim))])


def embedding_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The inverse of :func:`to_embedding_array`: a (fixed-size) list column -> float32 ``(rows, dim)``."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    flat = arr.flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat.reshape(n, -1) if n else flat.reshape(0, 0), dtype=np.float32)


def to_embedding_array(vectors: np.ndarray, dim: int, float16: bool = False) -> pa.FixedSizeListArray:
    """An ``(n, dim)`` array -> a fixed-size list Arrow array."""
    values = np.ascontiguousarray(vectors, dtype=np.float16 if float16 else np.float32).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(values), dim)


def first_per_hash(table: pa.Table) -> pa.Table:
    """One row per ``sentence_hash`` (the first of each); other columns are kept."""
    if not table.num_rows:
        return table
    _, first = np.unique(np.asarray(table.column(HASH).to_pylist(), dtype=object), return_index=True)
    return table if len(first) == table.num_rows else table.take(pa.array(np.sort(first)))


class EmbeddingCache:
    """One model revision's folder of cache shards.

    Args:
        root: cache root, local path or ``s3://bucket/prefix``.
        spec: the model whose embeddings are cached.
    """

    def __init__(self, root: str, spec: ModelSpec) -> None:
        self.root = root
        self.spec = spec
        self.uri = join(root, f"{slug(spec.model_id)}--{spec.revision}")
        self._fs, self._path = resolve(self.uri)

    @property
    def filesystem(self) -> pafs.FileSystem:
        """The pyarrow filesystem of the cache folder."""
        return self._fs

    @property
    def path(self) -> str:
        """The cache folder as its filesystem knows it."""
        return self._path

    def shards(self) -> list[str]:
        """Paths of the Parquet shards present now (empty when the folder does not exist)."""
        info = self._fs.get_file_info(pafs.FileSelector(self._path, recursive=True, allow_not_found=True))
        return sorted(i.path for i in info if i.type == pafs.FileType.File and i.path.endswith(".parquet"))

    def prepare(self) -> None:
        """Create the folder and its ``model.json`` description (idempotent)."""
        self._fs.create_dir(self._path, recursive=True)
        meta = {"model_id": self.spec.model_id, "revision": self.spec.revision, "dim": self.spec.dim,
                "key": "model_id + revision + sentence_hash", "columns": [HASH, EMBEDDING]}
        with self._fs.open_output_stream(join(self._path, "model.json")) as fh:
            fh.write(json.dumps(meta, indent=2).encode())

    def append(self, table: pa.Table) -> None:
        """Add (``sentence_hash``, ``embedding``) rows as one new shard (never rewrites an existing one)."""
        import uuid

        import pyarrow.parquet as pq

        if not table.num_rows:
            return
        self.prepare()
        shard = join(self._path, f"{uuid.uuid4().hex}_000000.parquet")
        pq.write_table(table.select([HASH, EMBEDDING]).cast(cache_schema(self.spec.dim)), shard,
                       filesystem=self._fs)

    def compact(self, rows_per_shard: int = 1_000_000) -> dict[str, int]:
        """Rewrite the shards present now as about ``rows / rows_per_shard`` shards, one row per hash.

        Ray Data reads the shards, hash-partitions them on ``sentence_hash`` and keeps the first row of each
        hash; the new shards are written next to the old ones, and only then are the old ones deleted. A
        crash in between leaves duplicate rows, which readers already tolerate, never a lost embedding; a
        job appending meanwhile keeps its shard. Run it while no embed job is *reading* the cache (a shard
        deleted under a reader fails that read).

        Returns:
            ``shards_before``, ``rows_before``, ``shards_after``, ``rows_after``.
        """
        old = self.shards()
        rows_before = sum(parquet_rows(self._fs, p) for p in old)
        result = {"shards_before": len(old), "rows_before": rows_before}
        if not old or (len(old) == 1 and self._distinct_rows(old[0]) == rows_before):
            return {**result, "shards_after": len(old), "rows_after": rows_before}  # nothing to gain
        parts = max(1, -(-rows_before // rows_per_shard))
        ds = read_parquet(old, self._fs, columns=[HASH, EMBEDDING]).repartition(parts, keys=[HASH])
        ds.map_batches(first_per_hash, batch_format="pyarrow", batch_size=None).write_parquet(
            self._path, filesystem=self._fs)
        for path in old:
            self._fs.delete_file(path)
        new = self.shards()
        return {**result, "shards_after": len(new), "rows_after": sum(parquet_rows(self._fs, p) for p in new)}

    def _distinct_rows(self, shard: str) -> int:
        hashes = pads.dataset(shard, filesystem=self._fs, format="parquet").to_table(columns=[HASH]).column(HASH)
        return int(pc.count_distinct(hashes).as_py())

    def dataset(self) -> Any:
        """The shards as a lazy Ray dataset (``sentence_hash``, ``embedding``), or None when there are none."""
        shards = self.shards()
        if not shards:
            return None
        return read_parquet(shards, self._fs, columns=[HASH, EMBEDDING])

    def lookup(self, hashes: list[str]) -> dict[str, np.ndarray]:
        """Embeddings of the given hashes found in the cache, read in-process (for online callers).

        Only the requested hashes are materialised; shards are scanned with a filter on ``sentence_hash``.
        """
        shards = self.shards()
        if not shards or not hashes:
            return {}
        wanted = pa.array(sorted(set(hashes)), type=pa.string())
        ds = pads.dataset(shards, filesystem=self._fs, format="parquet")
        table = ds.to_table(columns=[HASH, EMBEDDING], filter=pads.field(HASH).isin(wanted))
        found: dict[str, np.ndarray] = {}
        if table.num_rows == 0:
            return found
        flat = table.column(EMBEDDING).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        matrix = flat.reshape(table.num_rows, self.spec.dim).astype(np.float32, copy=False)
        for i, h in enumerate(table.column(HASH).to_pylist()):
            found.setdefault(h, matrix[i])
        return found
