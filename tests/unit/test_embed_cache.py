"""The content-addressed embedding cache: folder per model revision, Parquet shards, in-process lookup."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aptray.embed.cache import EmbeddingCache, cache_schema, to_embedding_array
from aptray.embed.registry import ModelSpec, slug

SPEC = ModelSpec(model_id="sentence-transformers/all-MiniLM-L6-v2", path="/nonexistent", dim=4,
                 revision="0123456789abcdef")


def _shard(cache: EmbeddingCache, name: str, hashes: list[str], vectors: np.ndarray) -> None:
    table = pa.Table.from_arrays([pa.array(hashes), to_embedding_array(vectors, 4)], schema=cache_schema(4))
    pq.write_table(table, f"{cache.path}/{name}")


def test_folder_is_keyed_by_model_and_revision(tmp_path: Path) -> None:
    cache = EmbeddingCache(str(tmp_path), SPEC)
    assert cache.uri == str(tmp_path / "sentence-transformers_all-MiniLM-L6-v2--0123456789abcdef")
    other = EmbeddingCache(str(tmp_path), ModelSpec(SPEC.model_id, SPEC.path, 4, "fedcba9876543210"))
    assert other.uri != cache.uri
    assert slug("local/my model") == "local_my_model"


def test_empty_cache_has_no_shards(tmp_path: Path) -> None:
    cache = EmbeddingCache(str(tmp_path / "nothing-here"), SPEC)
    assert cache.shards() == []
    assert cache.lookup(["a"]) == {}


def test_lookup_reads_only_requested_hashes_first_row_wins(tmp_path: Path) -> None:
    cache = EmbeddingCache(str(tmp_path), SPEC)
    cache.prepare()
    assert json.loads(Path(cache.path, "model.json").read_text())["revision"] == SPEC.revision
    _shard(cache, "a.parquet", ["h1", "h2"], np.array([[1, 0, 0, 0], [0, 1, 0, 0]], np.float32))
    _shard(cache, "b.parquet", ["h2", "h3"], np.array([[0, 1, 0, 0], [0, 0, 1, 0]], np.float32))
    assert len(cache.shards()) == 2
    found = cache.lookup(["h3", "h1", "missing", "h2"])
    assert set(found) == {"h1", "h2", "h3"}
    np.testing.assert_array_equal(found["h3"], [0, 0, 1, 0])
    assert found["h1"].dtype == np.float32


def test_float16_array_type() -> None:
    arr = to_embedding_array(np.ones((3, 4), np.float32), 4, float16=True)
    assert arr.type == pa.list_(pa.float16(), 4)
    assert len(arr) == 3
