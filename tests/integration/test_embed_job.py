"""The embed job on real local Ray: dedup counts, equality with a plain encode, cache reuse (local and S3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aptray.config import AptrayConfig
from aptray.templating.base import sentence_hash

ROWS = 240
DISTINCT = 48


def _sentences(n: int, distinct: int, offset: int = 0) -> list[str]:
    verbs = ["read", "wrote", "executed", "connected to", "opened", "deleted"]
    return [f"process p{(i + offset) % distinct} {verbs[(i + offset) % distinct % 6]} "
            f"/var/lib/object-{(i + offset) % distinct}" for i in range(n)]


def write_sentences(root: Path, sentences: list[str], prefix: str = "r") -> Path:
    """A minimal templatize output: ``sentences/`` Parquet in two files plus ``manifest.json``."""
    n = len(sentences)
    table = pa.table({
        "record_id": [f"{prefix}{i}" for i in range(n)],
        "source": ["synthetic"] * n,
        "source_file": ["trace.csv"] * n,
        "line": pa.array(range(2, n + 2), pa.int64()),
        "malicious": pa.array([int(i % 17 == 0) for i in range(n)], pa.int8()),
        "sus": pa.array([int(i % 5 == 0) for i in range(n)], pa.int8()),
        "sentence": sentences,
        "sentence_hash": sentence_hash(sentences),
        "template_version": ["1"] * n,
    })
    (root / "sentences").mkdir(parents=True)
    half = n // 2
    pq.write_table(table.slice(0, half), root / "sentences" / "part-0.parquet")
    pq.write_table(table.slice(half), root / "sentences" / "part-1.parquet")
    (root / "manifest.json").write_text(json.dumps({"template_version": "1", "source": "synthetic"}))
    return root


def read_embeddings(uri: str) -> pa.Table:
    import pyarrow.dataset as pads

    from aptray.io.fs import resolve

    fs, path = resolve(uri)
    return pads.dataset(path, filesystem=fs, format="parquet").to_table().sort_by("record_id")


def matrix(table: pa.Table) -> np.ndarray:
    return np.stack(table.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)


def config(cache: str | None, **embed: Any) -> AptrayConfig:
    # the broadcast plan's jobs share two warm encoder actors (the model start is most of a small job's time): one
    # thread each whatever ``actors`` says, so a job of one actor finds the first of them (threads are part of a warm
    # actor's key) and idle actors never hold more than 1 of the cluster's 2 CPUs; the shuffle plan encodes on Ray
    # Data's own actor pool, which idle warm actors would keep waiting for CPUs
    warm = 0 if embed.get("broadcast_max_distinct") == 0 else 300
    return AptrayConfig.model_validate({"embed": {"model": "minilm", "cache": cache, "batch_size": 32,
                                                  "actors": 2, "torch_threads": 1, "keep_warm_s": warm, **embed}})


#: The two dedup/join plans: broadcast (the default for up to 200k distinct sentences) and Ray Data shuffles.
PLANS = {"broadcast": {}, "shuffle": {"broadcast_max_distinct": 0}}
#: The shuffle plan's variants of the cache tests cost a Ray Data shuffle job each (20-60 s on 2 cores): they run
#: under ``-m slow``; by default the shuffle plan is covered by the counting, equality and manifest tests.
SLOW_CASES: dict[str, set[str]] = {name: {"shuffle"} for name in (
    "test_second_run_reuses_cache", "test_partial_cache_encodes_only_new_sentences_float16",
    "test_duplicate_cache_rows_still_give_one_row_per_event",
    "test_compact_keeps_one_row_per_sentence_and_every_embedding")}


@pytest.fixture(scope="module", params=sorted(PLANS))
def first_run(request: pytest.FixtureRequest, ray_cluster: None,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from aptray.embed.job import run_embed
    from aptray.embed.pool import stop_all_warm

    plan: dict[str, Any] = PLANS[request.param]
    stop_all_warm()  # no idle warm actor of an earlier test holds CPUs the plan's first job needs
    root = tmp_path_factory.mktemp(f"embed-{request.param}")
    sentences = _sentences(ROWS, DISTINCT)
    inp = write_sentences(root / "in", sentences)
    cache = str(root / "cache")
    counts = run_embed(str(inp), str(root / "out1"), config(cache, **plan))
    yield {"root": root, "input": inp, "cache": cache, "counts": counts, "sentences": sentences, "plan": plan}


def test_counts_each_distinct_sentence_encoded_once(first_run: dict[str, Any]) -> None:
    counts = first_run["counts"]
    assert counts["rows"] == ROWS
    assert counts["distinct_sentences"] == DISTINCT == len(set(first_run["sentences"]))
    assert counts["encoded"] == DISTINCT
    assert counts["cache_hits"] == 0


def test_every_row_has_one_output_row_with_labels(first_run: dict[str, Any]) -> None:
    out = read_embeddings(str(first_run["root"] / "out1" / "embeddings"))
    src = pq.read_table(first_run["input"] / "sentences").sort_by("record_id")
    assert out.num_rows == ROWS
    assert out.column("record_id").to_pylist() == src.column("record_id").to_pylist()
    assert out.schema.field("embedding").type == pa.list_(pa.float32(), 384)
    # the sentence travels with its row (the artifact's nearest-benign explanations name sentences)
    for col in ("sentence_hash", "sentence", "malicious", "sus", "source_file", "line"):
        assert out.column(col).to_pylist() == src.column(col).to_pylist(), col


def test_embeddings_equal_plain_encode(first_run: dict[str, Any]) -> None:
    from sentence_transformers import SentenceTransformer

    from aptray.embed.registry import resolve

    out = read_embeddings(str(first_run["root"] / "out1" / "embeddings"))
    src = pq.read_table(first_run["input"] / "sentences").sort_by("record_id")
    model = SentenceTransformer(resolve("minilm").path, device="cpu", local_files_only=True)
    ref = np.asarray(model.encode(src.column("sentence").to_pylist(), batch_size=32, show_progress_bar=False))
    got = matrix(out)
    cos = np.sum(got * ref, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= 0.999


def test_manifest_describes_the_output(first_run: dict[str, Any]) -> None:
    manifest = json.loads((first_run["root"] / "out1" / "manifest.json").read_text())
    assert manifest["model_id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert manifest["dim"] == 384 and len(manifest["revision"]) == 16
    assert manifest["template_version"] == "1"
    assert manifest["counts"]["encoded"] == DISTINCT


def test_second_run_reuses_cache(first_run: dict[str, Any]) -> None:
    from aptray.embed.job import run_embed

    out2 = first_run["root"] / "out2"
    counts = run_embed(str(first_run["input"]), str(out2), config(first_run["cache"], **first_run["plan"]))
    assert counts["encoded"] == 0
    assert counts["cache_hits"] == counts["distinct_sentences"] == DISTINCT
    a = read_embeddings(str(first_run["root"] / "out1" / "embeddings"))
    b = read_embeddings(str(out2 / "embeddings"))
    assert b.column("record_id").to_pylist() == a.column("record_id").to_pylist()
    np.testing.assert_array_equal(matrix(a), matrix(b))


def test_partial_cache_encodes_only_new_sentences_float16(first_run: dict[str, Any]) -> None:
    from aptray.embed.job import run_embed

    root = first_run["root"]
    old = first_run["sentences"][:100]
    new = [f"brand new sentence number {i % 10}" for i in range(60)]
    inp = write_sentences(root / "in3", old + new, prefix="m")
    cfg = config(first_run["cache"], output_float16=True, **first_run["plan"])
    counts = run_embed(str(inp), str(root / "out3"), cfg)
    assert counts["rows"] == 160
    assert counts["distinct_sentences"] == len(set(old)) + 10
    assert counts["encoded"] == 10
    assert counts["cache_hits"] == len(set(old))
    out = read_embeddings(str(root / "out3" / "embeddings"))
    assert out.num_rows == 160
    assert out.schema.field("embedding").type == pa.list_(pa.float16(), 384)


def test_cli_prints_one_json_line(first_run: dict[str, Any]) -> None:
    from typer.testing import CliRunner

    from aptray.cli import app

    out = first_run["root"] / "out_cli"
    result = CliRunner().invoke(app, ["embed", str(first_run["input"]), "--model", "minilm", "--out", str(out),
                                      "--cache", first_run["cache"], "--actors", "1"])
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(line) == {"rows", "distinct_sentences", "encoded", "cache_hits", "seconds"}
    assert (line["rows"], line["distinct_sentences"], line["encoded"], line["cache_hits"]) == (
        ROWS, DISTINCT, 0, DISTINCT)


def test_missing_model_is_one_clear_error(ray_cluster: None, tmp_path: Path) -> None:
    from aptray.embed.job import run_embed
    from aptray.embed.registry import ModelNotFoundError

    inp = write_sentences(tmp_path / "in", _sentences(10, 5))
    with pytest.raises(ModelNotFoundError, match="pip install"):
        run_embed(str(inp), str(tmp_path / "out"), config(None, model=str(tmp_path / "nope")))


def test_s3_cache_and_output(ray_cluster: None, s3_server: str, tmp_path: Path) -> None:
    import boto3

    from aptray.embed.job import run_embed

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="embed-cache")
    inp = write_sentences(tmp_path / "in", _sentences(80, 12, offset=3))
    cache = "s3://embed-cache/cache"
    first = run_embed(str(inp), "s3://embed-cache/out1", config(cache, actors=1))
    assert (first["encoded"], first["cache_hits"], first["distinct_sentences"]) == (12, 0, 12)
    second = run_embed(str(inp), "s3://embed-cache/out2", config(cache, actors=1))
    assert (second["encoded"], second["cache_hits"]) == (0, 12)
    a = read_embeddings("s3://embed-cache/out1/embeddings")
    b = read_embeddings("s3://embed-cache/out2/embeddings")
    assert a.num_rows == b.num_rows == 80
    np.testing.assert_array_equal(matrix(a), matrix(b))


def test_raw_trace_is_templatized_on_the_fly(ray_cluster: None, shared_data: Path, tmp_path: Path) -> None:
    from aptray.embed.job import run_embed

    folder = shared_data / "darpa_tc_adapt" / "pandex" / "clearscope"
    counts = run_embed(str(folder / "ProcessEvent.csv"), str(tmp_path / "out"), config(None, actors=1),
                       source="adapt")
    assert counts["rows"] > 0
    assert 0 < counts["distinct_sentences"] <= counts["rows"]
    assert counts["encoded"] == counts["distinct_sentences"]
    out = read_embeddings(str(tmp_path / "out" / "embeddings"))
    assert out.num_rows == counts["rows"]
    assert int(np.sum(out.column("malicious").to_numpy(zero_copy_only=False))) > 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["source"] == "adapt"


@pytest.mark.gpu
@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA device")
def test_gpu_actor_embeds_on_cuda(first_run: dict[str, Any]) -> None:
    from aptray.embed.job import run_embed

    out = first_run["root"] / "out_gpu"
    counts = run_embed(str(first_run["input"]), str(out), config(None, actors=1, gpus_per_actor=1.0))
    assert counts["encoded"] == DISTINCT
    a = matrix(read_embeddings(str(first_run["root"] / "out1" / "embeddings")))
    g = matrix(read_embeddings(str(out / "embeddings")))
    cos = np.sum(a * g, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(g, axis=1))
    assert cos.min() >= 0.99


def test_duplicate_cache_rows_still_give_one_row_per_event(first_run: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    from aptray.embed.cache import EmbeddingCache
    from aptray.embed.job import run_embed
    from aptray.embed.registry import resolve

    cache_root = tmp_path / "cache"
    shutil.copytree(first_run["cache"], cache_root)
    cache = EmbeddingCache(str(cache_root), resolve("minilm"))
    for i, shard in enumerate(cache.shards()):  # as if two concurrent jobs appended the same sentences
        shutil.copy(shard, Path(cache.path) / f"copy-{i}.parquet")
    cfg = config(str(cache_root), actors=1, **first_run["plan"])
    counts = run_embed(str(first_run["input"]), str(tmp_path / "out"), cfg)
    assert (counts["rows"], counts["encoded"], counts["cache_hits"]) == (ROWS, 0, DISTINCT)
    out = read_embeddings(str(tmp_path / "out" / "embeddings"))
    assert out.num_rows == ROWS and len(set(out.column("record_id").to_pylist())) == ROWS


def test_compact_keeps_one_row_per_sentence_and_every_embedding(first_run: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    from typer.testing import CliRunner

    from aptray.cli import app
    from aptray.embed.cache import EmbeddingCache
    from aptray.embed.job import run_embed
    from aptray.embed.registry import resolve

    cache_root = tmp_path / "cache"
    shutil.copytree(first_run["cache"], cache_root)
    cache = EmbeddingCache(str(cache_root), resolve("minilm"))
    for i, shard in enumerate(cache.shards()):  # duplicates, as two concurrent jobs leave them
        shutil.copy(shard, Path(cache.path) / f"copy-{i}.parquet")
    before = pq.ParquetDataset(cache.shards()).read()
    expected = {h: v for h, v in zip(before.column("sentence_hash").to_pylist(), matrix(before), strict=True)}
    assert before.num_rows > len(expected) >= DISTINCT  # other tests of the module may have added sentences

    result = CliRunner().invoke(app, ["embed-cache-compact", str(cache_root), "--model", "minilm",
                                      "--rows-per-shard", "20"])
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert (line["rows_before"], line["rows_after"]) == (before.num_rows, len(expected))
    after = pq.ParquetDataset(cache.shards()).read()
    assert line["shards_after"] == len(cache.shards()) >= 2  # about 50 rows at 20 per shard: several shards
    hashes = after.column("sentence_hash").to_pylist()
    assert sorted(hashes) == sorted(expected)
    for h, v in zip(hashes, matrix(after), strict=True):
        np.testing.assert_array_equal(v, expected[h])
    assert cache.compact(rows_per_shard=20)["rows_after"] == len(expected)  # again: nothing lost or added

    counts = run_embed(str(first_run["input"]), str(tmp_path / "out"), config(str(cache_root), actors=1,
                                                                               **first_run["plan"]))
    assert (counts["encoded"], counts["cache_hits"]) == (0, DISTINCT)
